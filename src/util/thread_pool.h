// A small persistent thread pool for host compute: the CPU backend's kernels and load-time weight
// quantization share it, so they never oversubscribe the cores. One parallel_for runs at a time; the
// calling thread works alongside the pool, and a parallel_for issued from inside a running one executes
// inline, so kernels can call helpers that parallelize without deadlocking.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace canvas {

// fn(begin, end) processes the half-open index range [begin, end).
using RangeFunction = std::function<void(int64_t begin, int64_t end)>;

class ThreadPool {
 public:
  // `threads` counts the caller too: a pool of 1 runs everything on the calling thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, count) into chunks of at least `grain` indices and runs fn on each, in any order and on any
  // thread. Returns when all chunks are done; the first exception a chunk throws is rethrown here.
  void parallel_for(int64_t count, int64_t grain, const RangeFunction& fn);

 private:
  struct Job;
  void worker_loop();
  static void run_chunks(Job& job);

  std::vector<std::thread> workers_;
  std::mutex dispatch_mutex_;  // serializes parallel_for calls from different threads
  std::mutex state_mutex_;     // guards the fields below
  std::condition_variable wake_workers_;
  std::condition_variable workers_left_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  int workers_inside_job_ = 0;
  bool stopping_ = false;
};

// The process-wide pool: CANVAS_CPU_THREADS threads if set, else std::thread::hardware_concurrency().
ThreadPool& thread_pool();

inline void parallel_for(int64_t count, int64_t grain, const RangeFunction& fn) {
  thread_pool().parallel_for(count, grain, fn);
}

}  // namespace canvas
