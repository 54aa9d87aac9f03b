// Weight uploads on the copy stream, overlapping compute (see UploadQueue in backend/backend.h).
//
// A worker thread takes the queued uploads in order. Pinned sources, and the parts of a memory-mapped
// checkpoint locked in place (memory/host_page_locks.h), go to the copy engine directly. Others are copied
// by several host threads into a pinned staging ring and sent from there. The ring holds more than one
// upload, so the host copies the next blocks while the copy engine still waits for compute to free their
// slot: host copying and slot waits overlap.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_timestamp.h"
#include "memory/host_page_locks.h"

namespace canvas {

namespace {

// An event plus whether it has been recorded yet: the worker records upload fences later than the
// caller receives them, and waiting on an unrecorded event would wait for nothing.
class CudaFence final : public DeviceFence {
 public:
  CudaFence() { CANVAS_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~CudaFence() override { (void)cudaEventDestroy(event_); }

  void record(cudaStream_t stream) {
    CANVAS_CUDA_CHECK(cudaEventRecord(event_, stream));
    std::lock_guard lock(mutex_);
    recorded_ = true;
    ready_.notify_all();
  }
  // Returns the event once recorded, or throws the worker's error.
  cudaEvent_t recorded_event(const std::function<void()>& rethrow_failure) {
    std::unique_lock lock(mutex_);
    while (!recorded_) {
      ready_.wait_for(lock, std::chrono::milliseconds(100));
      lock.unlock();
      rethrow_failure();
      lock.lock();
    }
    return event_;
  }
  cudaEvent_t event() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
  std::mutex mutex_;
  std::condition_variable ready_;
  bool recorded_ = false;
};

bool is_pinned(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

// memcpy split over a few threads: one core cannot read a memory-mapped file as fast as the copy
// engine drains pinned memory.
void parallel_memcpy(void* destination, const void* source, size_t bytes, int threads) {
  const size_t part = (bytes + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  std::vector<std::thread> workers;
  for (int i = 1; i < threads && part * static_cast<size_t>(i) < bytes; ++i) {
    size_t offset = part * static_cast<size_t>(i);
    workers.emplace_back([=] {
      std::memcpy(static_cast<char*>(destination) + offset, static_cast<const char*>(source) + offset,
                  std::min(part, bytes - offset));
    });
  }
  std::memcpy(destination, source, std::min(part, bytes));
  for (std::thread& worker : workers) worker.join();
}

class CudaUploadQueue final : public UploadQueue {
 public:
  CudaUploadQueue(int device, CudaContext& context, CudaClock& clock, int64_t staging_bytes)
      : device_(device), context_(context), clock_(clock) {
    OwnerScope owner({"upload_queue", -1, MemoryRole::Staging});
    ring_ = pinned_host_allocator().allocate(std::max<int64_t>(staging_bytes, int64_t{8} << 20));
    copy_threads_ = static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u));
    worker_ = std::thread([this] { run(); });
  }

  ~CudaUploadQueue() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_all();
    worker_.join();
    (void)cudaStreamSynchronize(context_.copy_stream);
    for (const StagedRange& range : in_flight_) (void)cudaEventDestroy(range.drained);
  }

  Fence upload(std::vector<UploadCopy> copies, const Fence& reuse_after, UploadTimes* times) override {
    auto done = std::make_shared<CudaFence>();
    std::shared_ptr<CudaTimestamp> start, end;
    if (times) {
      start = clock_.timestamp();
      end = clock_.timestamp();
      *times = {start, end};
    }
    // Slots come from the compute stream's pool: with nothing to reuse yet, the copy still waits for the
    // compute stream to reach this point, where the slot's allocation is ordered.
    std::shared_ptr<CudaFence> after = std::static_pointer_cast<CudaFence>(reuse_after);
    if (!after) after = std::static_pointer_cast<CudaFence>(compute_fence());
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back({std::move(copies), std::move(after), done, std::move(start), std::move(end)});
    }
    work_.notify_one();
    return done;
  }

  void compute_wait(const Fence& fence) override {
    auto cuda_fence = std::static_pointer_cast<CudaFence>(fence);
    cudaEvent_t event = cuda_fence->recorded_event([this] { rethrow_failure(); });
    cuda::DeviceGuard guard(device_);
    CANVAS_CUDA_CHECK(cudaStreamWaitEvent(context_.compute_stream, event, 0));
  }

  Fence compute_fence() override {
    auto fence = std::make_shared<CudaFence>();
    cuda::DeviceGuard guard(device_);
    fence->record(context_.compute_stream);
    return fence;
  }

 private:
  struct Job {
    std::vector<UploadCopy> copies;
    std::shared_ptr<CudaFence> reuse_after;
    std::shared_ptr<CudaFence> done;
    std::shared_ptr<CudaTimestamp> start, end;  // null unless timed
  };
  // A stretch of the staging ring the copy engine has yet to finish reading.
  struct StagedRange {
    int64_t begin, end;
    cudaEvent_t drained;
  };

  void rethrow_failure() {
    std::lock_guard lock(mutex_);
    if (failure_) std::rethrow_exception(failure_);
  }

  void run() {
    try {
      CANVAS_CUDA_CHECK(cudaSetDevice(device_));
      for (;;) {
        Job job;
        {
          std::unique_lock lock(mutex_);
          work_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
          if (jobs_.empty()) return;
          job = std::move(jobs_.front());
          jobs_.pop_front();
        }
        CANVAS_CUDA_CHECK(cudaStreamWaitEvent(context_.copy_stream, job.reuse_after->event(), 0));
        // The start is where the copy stream turns to this upload (its slot free, earlier copies done);
        // a staged source's first chunk may still be on its way from the host then.
        if (job.start) job.start->record(context_.copy_stream);
        for (const UploadCopy& copy : job.copies) upload_one(copy);
        if (job.end) job.end->record(context_.copy_stream);
        job.done->record(context_.copy_stream);
      }
    } catch (...) {
      std::lock_guard lock(mutex_);
      failure_ = std::current_exception();
    }
  }

  void upload_one(const UploadCopy& copy) {
    const auto* source = static_cast<const char*>(copy.source.raw_data());
    auto* destination = static_cast<char*>(copy.destination.raw_data());
    const int64_t bytes = copy.source.nbytes();
    check(copy.destination.nbytes() == bytes,
          "upload of " + std::to_string(bytes) + " bytes into " + std::to_string(copy.destination.nbytes()));
    // Parts of a mapped checkpoint locked in place go straight to the copy engine; the rest is staged.
    const std::vector<HostRun> runs = host_page_locks().runs(source, bytes);
    if (runs.size() == 1 && !runs.front().locked && is_pinned(source)) {
      send(destination, source, bytes);
      return;
    }
    for (const HostRun& run : runs) {
      if (run.locked)
        send(destination + run.offset, source + run.offset, run.bytes);
      else
        stage(destination + run.offset, source + run.offset, run.bytes);
    }
  }

  // A copy the copy engine reads straight from page-locked host memory.
  void send(char* destination, const char* source, int64_t bytes) {
    CANVAS_CUDA_CHECK(cudaMemcpyAsync(destination, source, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                                      context_.copy_stream));
  }

  // A copy through the staging ring, in chunks of a quarter ring, so a chunk's host copy overlaps the
  // transfer of the one before it.
  void stage(char* destination, const char* source, int64_t bytes) {
    const int64_t ring_bytes = ring_->bytes();
    while (!in_flight_.empty() && cudaEventQuery(in_flight_.front().drained) == cudaSuccess) {
      CANVAS_CUDA_CHECK(cudaEventDestroy(in_flight_.front().drained));
      in_flight_.pop_front();
    }
    for (int64_t offset = 0; offset < bytes;) {
      const int64_t chunk = std::min(bytes - offset, ring_bytes / 4);
      if (ring_position_ + chunk > ring_bytes) ring_position_ = 0;
      const int64_t begin = ring_position_, end = begin + chunk;
      // Wait until the copy engine has read every earlier range this one overwrites; ranges drain in
      // the order they were sent.
      auto overwrites_in_flight = [&] {
        return std::any_of(in_flight_.begin(), in_flight_.end(),
                           [&](const StagedRange& range) { return range.begin < end && begin < range.end; });
      };
      while (overwrites_in_flight()) {
        CANVAS_CUDA_CHECK(cudaEventSynchronize(in_flight_.front().drained));
        CANVAS_CUDA_CHECK(cudaEventDestroy(in_flight_.front().drained));
        in_flight_.pop_front();
      }
      char* staging = static_cast<char*>(ring_->data()) + begin;
      parallel_memcpy(staging, source + offset, static_cast<size_t>(chunk), copy_threads_);
      send(destination + offset, staging, chunk);
      cudaEvent_t drained = nullptr;
      CANVAS_CUDA_CHECK(cudaEventCreateWithFlags(&drained, cudaEventDisableTiming));
      CANVAS_CUDA_CHECK(cudaEventRecord(drained, context_.copy_stream));
      in_flight_.push_back({begin, end, drained});
      ring_position_ = end;
      offset += chunk;
    }
  }

  int device_;
  CudaContext& context_;
  CudaClock& clock_;
  std::shared_ptr<Buffer> ring_;
  int64_t ring_position_ = 0;
  std::deque<StagedRange> in_flight_;  // oldest first, in ring order
  int copy_threads_ = 1;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::exception_ptr failure_;
};

}  // namespace

std::unique_ptr<UploadQueue> CudaBackend::create_upload_queue(int64_t staging_bytes) {
  return std::make_unique<CudaUploadQueue>(device_index_, *context_, *clock_, staging_bytes);
}

}  // namespace canvas
