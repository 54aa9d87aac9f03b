// Injected allocation failures (CANVAS_FAIL_ALLOC) across a tiny-model job. The recovery ladder must end
// each job with the unconstrained image (the lossless rungs) or with a clear OutOfMemoryError, never a
// crash, and a failed job must leave the model able to run the next one exactly as before.
#include "memory/fault_injection.h"

#include <gtest/gtest.h>

#include <cstring>

#include "pipeline/recovery_ladder.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

class FaultInjection : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("CANVAS_CACHE_DIR", test::scratch_dir("fault_injection_cache").c_str(), 1);
    components_ = std::make_unique<QwenImageComponents>(
        load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu()));
    request_ = test::golden_request(test::golden_json("pipeline/b_64x64_cfg4_space_seed7"));
    // Streaming and offloading take the most allocation sites: placements, rings, uploads.
    components_->memory_options.plan.strategy = Strategy::SequentialOffload;
  }
  void TearDown() override { FaultInjector::instance().configure(""); }

  // What a failed job leaves: no arrangement, the checkpoint's weights; and nothing remembered, so that
  // each job starts from the top of the ladder.
  void drop_arrangement() {
    components_->drop_arrangement();
    RecoveryMemory::forget(recovery_key(*components_, request_));
  }
  // The clean job's result, and in `allocations` how many allocations a job from a dropped arrangement
  // makes (the most: it plans and places everything), so that a sweep covers every site.
  TextToImageResult clean_job(int64_t& allocations) {
    FaultInjector& injector = FaultInjector::instance();
    injector.configure("");
    TextToImageResult clean = text_to_image(*components_, request_);
    drop_arrangement();
    injector.configure("");
    text_to_image(*components_, request_);
    allocations = injector.allocations_seen();
    return clean;
  }

  std::unique_ptr<QwenImageComponents> components_;
  TextToImageRequest request_;
};

TEST_F(FaultInjection, EveryAllocationSiteIsRecoveredWithTheSameImage) {
  FaultInjector& injector = FaultInjector::instance();
  int64_t allocations = 0;
  const TextToImageResult clean = clean_job(allocations);
  ASSERT_GT(allocations, 100);
  std::printf("[ faults ] %lld allocation sites in the job\n", static_cast<long long>(allocations));

  for (int64_t site = 1; site <= allocations; ++site) {
    drop_arrangement();
    injector.configure(std::to_string(site));
    // One failure: releasing the cached memory and running the attempt again is enough.
    TextToImageResult result = text_to_image(*components_, request_);
    ASSERT_EQ(result.recoveries.size(), 1u) << "allocation " << site;
    EXPECT_NE(result.recoveries[0].find("injected allocation failure"), std::string::npos)
        << result.recoveries[0];
    EXPECT_NE(result.recoveries[0].find("-> released cached memory"), std::string::npos)
        << result.recoveries[0];
    ASSERT_TRUE(test::bit_identical(result.image, clean.image)) << "recovered at allocation " << site;
  }
  injector.configure("");
}

TEST_F(FaultInjection, RepeatedFailuresGoDownTheLadderOrFailClearly) {
  // With the weights on the device there are lossless rungs below "release": each seed's job either
  // ends with the clean image or says it ran out of rungs, and the same seed ends the same way.
  components_->memory_options.plan.strategy = Strategy::ModelOffload;
  FaultInjector& injector = FaultInjector::instance();
  injector.configure("");
  drop_arrangement();
  const TextToImageResult clean = text_to_image(*components_, request_);
  auto outcome = [&](int seed) -> std::string {
    drop_arrangement();
    injector.configure("random:" + std::to_string(seed) + ":0.005");
    try {
      TextToImageResult result = text_to_image(*components_, request_);
      EXPECT_FALSE(result.recoveries.empty());
      EXPECT_TRUE(test::bit_identical(result.image, clean.image)) << "seed " << seed;
      std::string rungs;
      // The rung each line names, without its timing.
      for (const std::string& line : result.recoveries) {
        const size_t arrow = line.rfind("->");
        rungs += line.substr(arrow, line.rfind(" (") - arrow) + "; ";
      }
      return "recovered: " + rungs;
    } catch (const OutOfMemoryError& error) {
      EXPECT_NE(std::string(error.what()).find("lowest rung"), std::string::npos) << error.what();
      return error.what();
    }
  };
  int recovered = 0, failed = 0, lower_rungs = 0;
  for (int seed = 1; seed <= 12; ++seed) {
    std::string first = outcome(seed);
    EXPECT_EQ(outcome(seed), first) << "seed " << seed;
    const bool ok = first.starts_with("recovered");
    (ok ? recovered : failed) += 1;
    if (ok && first.find("streamed") != std::string::npos) ++lower_rungs;
  }
  injector.configure("");
  std::printf("[ faults ] random 0.5%%: %d jobs recovered (%d on a lower rung), %d failed clearly\n",
              recovered, lower_rungs, failed);
  EXPECT_GT(recovered, 0);
  EXPECT_GT(lower_rungs, 0);
  drop_arrangement();
  EXPECT_TRUE(test::bit_identical(text_to_image(*components_, request_).image, clean.image));
}

TEST(FaultInjectionSpec, MalformedSpecsAreRejectedClearly) {
  FaultInjector& injector = FaultInjector::instance();
  for (const char* bad :
       {"0", "-3", "abc", "12x", "random:", "random:1", "random:1:2", "random:x:0.1", "random:1:nan"}) {
    EXPECT_THROW(injector.configure(bad), Error) << bad;
  }
  injector.configure("random:5:0.5");
  int failed = 0;
  for (int i = 0; i < 1000; ++i) failed += injector.should_fail() ? 1 : 0;
  EXPECT_GT(failed, 400);
  EXPECT_LT(failed, 600);
  injector.configure("3");
  EXPECT_FALSE(injector.should_fail());
  EXPECT_FALSE(injector.should_fail());
  EXPECT_TRUE(injector.should_fail());
  EXPECT_FALSE(injector.should_fail());
  injector.configure("");
}

}  // namespace
}  // namespace canvas
