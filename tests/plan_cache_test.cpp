// The CUDA backend's plan cache (plain C++, so it runs without a GPU): each key built once, the least
// recently used plan evicted past the capacity, replacements, and many threads asking at once.
#include "backend/cuda/plan_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace canvas {
namespace {

using Cache = cuda::PlanCache<int, std::string>;

// Finds the plan for `key`, counting the builds a miss makes.
std::shared_ptr<std::string> find(Cache& cache, int key, int& builds) {
  return cache.find_or_build(key, [&] {
    ++builds;
    return std::make_shared<std::string>("plan " + std::to_string(key));
  });
}

TEST(PlanCache, BuildsEachKeyOnce) {
  Cache cache(4);
  int builds = 0;
  const std::shared_ptr<std::string> first = find(cache, 1, builds);
  EXPECT_EQ(*first, "plan 1");
  EXPECT_EQ(find(cache, 1, builds), first);
  EXPECT_EQ(*find(cache, 2, builds), "plan 2");
  EXPECT_EQ(builds, 2);
}

TEST(PlanCache, EvictsTheLeastRecentlyUsedPastItsCapacity) {
  Cache cache(2);
  int builds = 0;
  const std::shared_ptr<std::string> one = find(cache, 1, builds);
  find(cache, 2, builds);
  find(cache, 1, builds);  // 2 is now the least recently used
  find(cache, 3, builds);  // evicts 2
  EXPECT_EQ(builds, 3);
  EXPECT_EQ(find(cache, 1, builds), one);
  EXPECT_EQ(*find(cache, 3, builds), "plan 3");
  EXPECT_EQ(builds, 3);
  find(cache, 2, builds);  // rebuilt, evicting 1
  EXPECT_EQ(builds, 4);
  EXPECT_NE(find(cache, 1, builds), one);
  EXPECT_EQ(builds, 5);
}

TEST(PlanCache, AnEvictedPlanLivesWhileACallerHoldsIt) {
  Cache cache(1);
  int builds = 0;
  const std::shared_ptr<std::string> held = find(cache, 1, builds);
  find(cache, 2, builds);
  EXPECT_EQ(*held, "plan 1");
}

TEST(PlanCache, ReplaceTakesThePlaceOfTheBuiltPlan) {
  Cache cache(2);
  int builds = 0;
  find(cache, 1, builds);
  cache.replace(1, std::make_shared<std::string>("refused"));
  EXPECT_EQ(*find(cache, 1, builds), "refused");
  cache.replace(2, std::make_shared<std::string>("refused too"));  // a key not cached yet
  EXPECT_EQ(*find(cache, 2, builds), "refused too");
  EXPECT_EQ(builds, 1);
}

TEST(PlanCache, ABuildThatThrowsCachesNothing) {
  Cache cache(2);
  EXPECT_THROW(
      cache.find_or_build(1, []() -> std::shared_ptr<std::string> { throw std::runtime_error("x"); }),
      std::runtime_error);
  int builds = 0;
  EXPECT_EQ(*find(cache, 1, builds), "plan 1");
  EXPECT_EQ(builds, 1);
}

TEST(PlanCache, ThreadsAskingAtOnceShareOneBuildPerKey) {
  constexpr int kKeys = 16, kThreads = 4, kRounds = 200;
  Cache cache(kKeys);
  std::atomic<int> builds = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < kRounds; ++round) {
        const int key = round % kKeys;
        const std::shared_ptr<std::string> plan = cache.find_or_build(key, [&] {
          ++builds;
          return std::make_shared<std::string>("plan " + std::to_string(key));
        });
        EXPECT_EQ(*plan, "plan " + std::to_string(key));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(builds, kKeys);
}

}  // namespace
}  // namespace canvas
