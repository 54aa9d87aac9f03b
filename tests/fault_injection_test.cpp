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
    model_ = std::make_unique<QwenImageModel>(
        load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu()));
    request_ = test::golden_request(test::golden_json("pipeline/b_64x64_cfg4_space_seed7"));
    // Streaming and offloading take the most allocation sites: placements, rings, uploads.
    options_.plan.strategy = Strategy::SequentialOffload;
  }
  void TearDown() override { FaultInjector::instance().configure(""); }

  JobResult run() { return text_to_image(*model_, request_, options_); }
  // The clean job's result, and in `allocations` how many allocations a job makes (it plans and places
  // everything), so that a sweep covers every site. The first job also measures the machine's speeds,
  // once per cache folder: the second is counted.
  JobResult clean_job(int64_t& allocations) {
    FaultInjector& injector = FaultInjector::instance();
    injector.configure("");
    JobResult clean = run();
    injector.configure("");
    run();
    allocations = injector.allocations_seen();
    return clean;
  }

  std::unique_ptr<QwenImageModel> model_;
  TextToImageRequest request_;
  MemoryOptions options_;
};

TEST_F(FaultInjection, EveryAllocationSiteIsRecoveredWithTheSameImage) {
  FaultInjector& injector = FaultInjector::instance();
  int64_t allocations = 0;
  const JobResult clean = clean_job(allocations);
  ASSERT_GT(allocations, 100);
  std::printf("[ faults ] %lld allocation sites in the job\n", static_cast<long long>(allocations));

  for (int64_t site = 1; site <= allocations; ++site) {
    injector.configure(std::to_string(site));
    // One failure: releasing the cached memory and running the attempt again is enough.
    JobResult result = run();
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
  options_.plan.strategy = Strategy::ModelOffload;
  FaultInjector& injector = FaultInjector::instance();
  injector.configure("");
  const JobResult clean = run();
  auto outcome = [&](int seed) -> std::string {
    injector.configure("random:" + std::to_string(seed) + ":0.005");
    try {
      JobResult result = run();
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
  // Rungs taken for injected failures are not remembered: the next real job starts from the top.
  EXPECT_FALSE(RecoveryMemory::recall(recovery_key(*model_, request_, options_)).has_value());
  const JobResult next = run();
  EXPECT_TRUE(next.recoveries.empty());
  EXPECT_TRUE(test::bit_identical(next.image, clean.image));
}

TEST_F(FaultInjection, ALosslessCpuJobRetriesWhileTheHostHasRoom) {
  // The CPU plan maps every weight, so no rung moves weights off the device. Two faults in a row, with
  // the host's memory free, used to end the job after the release; now the attempt is retried as it is.
  options_ = {};
  int64_t allocations = 0;
  const JobResult clean = clean_job(allocations);
  FaultInjector& injector = FaultInjector::instance();
  int retried = 0;
  for (int64_t site = allocations / 10; site < allocations; site += allocations / 10) {
    injector.configure(std::to_string(site) + "," + std::to_string(site + 1));
    JobResult result = run();
    for (const std::string& line : result.recoveries) retried += line.find("-> retried") != std::string::npos;
    // A retry repeats the same arithmetic; only the VAE's tiling rung, if taken, moves the image.
    EXPECT_TRUE(test::bit_identical(result.latents, clean.latents)) << "faults at " << site;
  }
  injector.configure("");
  EXPECT_GT(retried, 0);
}

TEST(FaultInjectionSpec, MalformedSpecsAreRejectedClearly) {
  FaultInjector& injector = FaultInjector::instance();
  for (const char* bad : {"0", "-3", "abc", "12x", "3,", ",3", "3,,4", "random:", "random:1", "random:1:2",
                          "random:x:0.1", "random:1:nan"}) {
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
