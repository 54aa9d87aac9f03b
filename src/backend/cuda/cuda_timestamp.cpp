#include "backend/cuda/cuda_timestamp.h"

#include <utility>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"

namespace canvas {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Event times are float milliseconds from the reference, which lose precision far from it, and the
// device's and host's clocks drift apart by parts per million; a reference this young keeps both to
// microseconds, for a renewal that costs tens of microseconds.
constexpr auto kRenewReferenceAfter = std::chrono::seconds(1);

}  // namespace

// The destructors run when the profiler lets go of its timestamps, possibly after the runtime has shut
// down at exit, when there is nothing left to free.
CudaClockReference::~CudaClockReference() {
  if (event && cudaEventDestroy(event) != cudaSuccess) (void)cudaGetLastError();
}

CudaTimestamp::CudaTimestamp(std::shared_ptr<const CudaClockReference> reference)
    : reference_(std::move(reference)) {
  CANVAS_CUDA_CHECK(cudaEventCreate(&event_));
}

CudaTimestamp::~CudaTimestamp() {
  if (cudaEventDestroy(event_) != cudaSuccess) (void)cudaGetLastError();
}

void CudaTimestamp::record(cudaStream_t stream) {
  CANVAS_CUDA_CHECK(cudaEventRecord(event_, stream));
  recorded_.store(true, std::memory_order_release);
}

std::optional<SteadyClock::time_point> CudaTimestamp::time() {
  if (!recorded_.load(std::memory_order_acquire)) return std::nullopt;
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) {
    // Not an error, but the runtime keeps it as the thread's last one, where a later launch check would
    // find it.
    (void)cudaGetLastError();
    return std::nullopt;
  }
  CANVAS_CUDA_CHECK(status);
  float milliseconds = 0;
  CANVAS_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, reference_->event, event_));
  return reference_->host_time + std::chrono::duration_cast<SteadyClock::duration>(
                                     std::chrono::duration<double, std::milli>(milliseconds));
}

CudaClock::~CudaClock() {
  if (stream_ && cudaStreamDestroy(stream_) != cudaSuccess) (void)cudaGetLastError();
}

std::shared_ptr<CudaTimestamp> CudaClock::timestamp() {
  cuda::DeviceGuard guard(device_);
  std::shared_ptr<const CudaClockReference> reference;
  {
    std::lock_guard lock(mutex_);
    if (!reference_ || SteadyClock::now() - reference_->host_time > kRenewReferenceAfter) {
      if (!stream_) CANVAS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      auto renewed = std::make_shared<CudaClockReference>();
      CANVAS_CUDA_CHECK(cudaEventCreate(&renewed->event));
      // The device passes the event between these two readings; their midpoint is off by half the
      // round trip, microseconds.
      const SteadyClock::time_point before = SteadyClock::now();
      CANVAS_CUDA_CHECK(cudaEventRecord(renewed->event, stream_));
      CANVAS_CUDA_CHECK(cudaEventSynchronize(renewed->event));
      renewed->host_time = before + (SteadyClock::now() - before) / 2;
      reference_ = std::move(renewed);
    }
    reference = reference_;
  }
  return std::make_shared<CudaTimestamp>(std::move(reference));
}

Timestamp CudaBackend::compute_timestamp() {
  std::shared_ptr<CudaTimestamp> timestamp = clock_->timestamp();
  cuda::DeviceGuard guard(device_index_);
  timestamp->record(context_->compute_stream);
  return timestamp;
}

}  // namespace canvas
