// Injected allocation failures (CANVAS_FAIL_ALLOC) across a tiny-model job: each must end in a clear
// OutOfMemoryError, never a crash, and leave the model able to run the next job exactly as before.
#include "memory/fault_injection.h"

#include <gtest/gtest.h>

#include <cstring>

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

  // What a failed job leaves: no arrangement, the checkpoint's weights.
  void drop_arrangement() {
    components_->memory.reset();
    components_->restore_host_weights();
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

TEST_F(FaultInjection, EveryAllocationSiteFailsCleanlyAndTheNextJobRecovers) {
  FaultInjector& injector = FaultInjector::instance();
  int64_t allocations = 0;
  const TextToImageResult clean = clean_job(allocations);
  ASSERT_GT(allocations, 100);
  std::printf("[ faults ] %lld allocation sites in the job\n", static_cast<long long>(allocations));

  for (int64_t site = 1; site <= allocations; ++site) {
    drop_arrangement();
    injector.configure(std::to_string(site));
    try {
      text_to_image(*components_, request_);
      ADD_FAILURE() << "allocation " << site << " of " << allocations << " was not failed";
    } catch (const OutOfMemoryError& error) {
      EXPECT_NE(std::string(error.what()).find("injected allocation failure"), std::string::npos)
          << error.what();
    }
    injector.configure("");
    TextToImageResult again = text_to_image(*components_, request_);
    ASSERT_TRUE(test::bit_identical(again.image, clean.image)) << "after a failure at allocation " << site;
  }
}

TEST_F(FaultInjection, FailuresDuringStepsAreRecoveredByStreamingMoreBlocks) {
  // With the transformer's blocks on the device, a failure inside a step re-runs that step with half of
  // them streamed instead: a lossless rung, so the image is unchanged.
  components_->memory_options.plan.strategy = Strategy::ModelOffload;
  FaultInjector& injector = FaultInjector::instance();
  int64_t allocations = 0;
  const TextToImageResult clean = clean_job(allocations);
  int recovered = 0, failed = 0;
  for (int64_t site = 1; site <= allocations; ++site) {
    drop_arrangement();
    injector.configure(std::to_string(site));
    try {
      TextToImageResult result = text_to_image(*components_, request_);
      ASSERT_EQ(result.recoveries.size(), 1u) << "allocation " << site;
      EXPECT_NE(result.recoveries[0].find("streamed"), std::string::npos) << result.recoveries[0];
      EXPECT_GT(result.plan.component("transformer").streamed_blocks, 0);
      EXPECT_TRUE(test::bit_identical(result.image, clean.image)) << "recovered at allocation " << site;
      ++recovered;
    } catch (const OutOfMemoryError& error) {
      EXPECT_NE(std::string(error.what()).find("injected allocation failure"), std::string::npos);
      ++failed;
    }
  }
  injector.configure("");
  std::printf("[ faults ] model_offload: %d of %lld sites recovered inside a step, %d failed cleanly\n",
              recovered, static_cast<long long>(allocations), failed);
  // The denoising steps hold about a third of the job's allocations; planning, the text encoder and the
  // VAE have no lower rung yet and fail cleanly.
  EXPECT_GT(recovered, allocations / 5);
  EXPECT_GT(failed, 0);
}

TEST_F(FaultInjection, RandomFailuresAreReproducibleAndRecovered) {
  FaultInjector& injector = FaultInjector::instance();
  injector.configure("");
  const TextToImageResult clean = text_to_image(*components_, request_);
  // The outcome of one seeded run: the failure message, or "" for a finished job.
  auto outcome = [&](int seed) -> std::string {
    injector.configure("random:" + std::to_string(seed) + ":0.002");
    try {
      TextToImageResult result = text_to_image(*components_, request_);
      EXPECT_TRUE(test::bit_identical(result.image, clean.image));
      return "";
    } catch (const OutOfMemoryError& error) {
      return error.what();
    }
  };
  int failures = 0;
  for (int seed = 1; seed <= 8; ++seed) {
    // A failed job leaves no arrangement, so each seed starts from the same state.
    drop_arrangement();
    std::string first = outcome(seed);
    drop_arrangement();
    EXPECT_EQ(outcome(seed), first) << "seed " << seed;
    failures += first.empty() ? 0 : 1;
  }
  EXPECT_GT(failures, 0);
  injector.configure("");
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
