#include "util/thread_pool.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <string>

#include "util/error.h"

namespace canvas {

namespace {

// True on pool workers, and on a caller while it runs chunks: a parallel_for from there runs inline.
thread_local bool t_inside_parallel_region = false;

int configured_threads() {
  if (const char* text = std::getenv("CANVAS_CPU_THREADS")) {
    char* end = nullptr;
    long threads = std::strtol(text, &end, 10);
    check(end != text && *end == '\0' && threads >= 1 && threads <= 4096,
          "CANVAS_CPU_THREADS must be a positive integer, got '" + std::string(text) + "'");
    // The limit is for all CPU compute, so it applies to OpenBLAS's own threads as well.
    openblas_set_num_threads(static_cast<int>(threads));
    return static_cast<int>(threads);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

struct ThreadPool::Job {
  Job(const RangeFunction* function, int64_t total, int64_t chunk)
      : fn(function), count(total), chunk_size(chunk) {}

  const RangeFunction* fn;
  int64_t count;
  int64_t chunk_size;
  std::atomic<int64_t> next_begin{0};
  std::mutex error_mutex;
  std::exception_ptr error;
};

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(state_mutex_);
    stopping_ = true;
  }
  wake_workers_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::run_chunks(Job& job) {
  while (true) {
    int64_t begin = job.next_begin.fetch_add(job.chunk_size);
    if (begin >= job.count) return;
    try {
      (*job.fn)(begin, std::min(begin + job.chunk_size, job.count));
    } catch (...) {
      std::lock_guard lock(job.error_mutex);
      if (!job.error) job.error = std::current_exception();
      job.next_begin.store(job.count);  // hand out no further chunks
    }
  }
}

void ThreadPool::worker_loop() {
  t_inside_parallel_region = true;
  uint64_t seen_generation = 0;
  std::unique_lock lock(state_mutex_);
  while (true) {
    wake_workers_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
    if (stopping_) return;
    seen_generation = generation_;
    Job* job = job_;
    if (!job) continue;  // woke after the caller had already finished that job
    ++workers_inside_job_;
    lock.unlock();
    run_chunks(*job);
    lock.lock();
    if (--workers_inside_job_ == 0) workers_left_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t count, int64_t grain, const RangeFunction& fn) {
  if (count <= 0) return;
  // A few chunks per thread lets faster threads take over the work of slower ones.
  int64_t chunks_wanted = static_cast<int64_t>(threads()) * 4;
  int64_t chunk_size = std::max({grain, int64_t{1}, (count + chunks_wanted - 1) / chunks_wanted});
  if (workers_.empty() || t_inside_parallel_region || chunk_size >= count) {
    fn(0, count);
    return;
  }
  std::lock_guard dispatch(dispatch_mutex_);
  Job job(&fn, count, chunk_size);
  {
    std::lock_guard lock(state_mutex_);
    job_ = &job;
    ++generation_;
  }
  wake_workers_.notify_all();
  t_inside_parallel_region = true;
  run_chunks(job);
  t_inside_parallel_region = false;
  {
    // No worker may still hold `job` once this frame returns.
    std::unique_lock lock(state_mutex_);
    job_ = nullptr;
    workers_left_.wait(lock, [&] { return workers_inside_job_ == 0; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

ThreadPool& thread_pool() {
  static ThreadPool pool(configured_threads());
  return pool;
}

}  // namespace canvas
