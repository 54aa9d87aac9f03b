// The shared host thread pool: every index covered once, nested calls, and failures reaching the caller.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace canvas {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(10007);
  pool.parallel_for(static_cast<int64_t>(hits.size()), 3, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  for (const auto& hit : hits) ASSERT_EQ(hit.load(), 1);
}

TEST(ThreadPool, NestedCallsRunInlineAndExceptionsReachTheCaller) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  pool.parallel_for(8, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pool.parallel_for(100, 1,
                        [&](int64_t inner_begin, int64_t inner_end) { total += inner_end - inner_begin; });
    }
  });
  EXPECT_EQ(total.load(), 800);
  EXPECT_THROW(pool.parallel_for(64, 1,
                                 [](int64_t begin, int64_t) {
                                   if (begin >= 32) throw std::runtime_error("chunk failed");
                                 }),
               std::runtime_error);
  // The pool keeps working after a failed job.
  std::atomic<int64_t> after{0};
  pool.parallel_for(50, 1, [&](int64_t begin, int64_t end) { after += end - begin; });
  EXPECT_EQ(after.load(), 50);
}

}  // namespace
}  // namespace canvas
