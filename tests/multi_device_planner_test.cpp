// The memory planner with several devices, on the full-size Qwen-Image layout (as planner_test.cpp): each
// simulated GPU is a pool of its own, and plans are checked for keeping every pool within its budget, for
// placing what the parallelism asks, and for choosing the spread that is fastest for the job.
#include <gtest/gtest.h>

#include "pipeline/job_facts.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

class MultiDevicePlanner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new QwenImageModel(test::full_size_planning_model("multi_device_planner"));
  }
  static void TearDownTestSuite() { delete model_; }

  // Facts of a 50-step job at `side`², CFG 4 or without guidance, measured for two devices.
  static std::vector<ComponentFacts> facts(int64_t side, bool guided = true) {
    TextToImageRequest request;
    request.sampling.prompt = "a lighthouse on a cliff at dusk, oil painting";
    request.width = request.height = side;
    request.sampling.steps = 50;
    request.sampling.cfg_scale = guided ? 4.0f : 1.0f;
    MemoryOptions options;
    options.extra_devices = {Device::cuda(1)};
    return job_facts(*model_, job_geometry(model_->configs, request), request.sampling.prompt, options);
  }
  // Two H200s (figures from bench/RESULTS.md) joined at a peer-copy rate of 300 GB/s (NVLink's order), each
  // with `gib` free.
  static MachineFacts two_h200(int64_t gib, int64_t second_gib = -1) {
    MachineFacts machine = test::h200_machine(gib * kGiB);
    machine.extra_pools = {{Device::cuda(1), (second_gib < 0 ? gib : second_gib) * kGiB}};
    machine.interconnect_bytes_per_s = 300e9;
    return machine;
  }
  static MemoryPlan plan(const std::vector<ComponentFacts>& facts, const MachineFacts& machine,
                         Parallelism parallelism, Strategy strategy = Strategy::Auto) {
    PlanRequest request;
    request.strategy = strategy;
    request.parallelism = parallelism;
    MemoryPlan made = plan_memory(facts, machine, request);
    for (const std::string& line : made.describe()) std::printf("  %s\n", line.c_str());
    return made;
  }
  static void expect_within_budgets(const MemoryPlan& plan) {
    ASSERT_EQ(plan.pools.size(), 2u);
    for (const PoolUse& pool : plan.pools) {
      EXPECT_GT(pool.predicted_peak_bytes, 0) << pool.device.str();
      EXPECT_LE(pool.predicted_peak_bytes, pool.budget) << pool.device.str();
    }
  }
  static MachineFacts first_only(MachineFacts machine) {
    machine.extra_pools.clear();
    return machine;
  }
  // `job`'s auto plans on one 136 GiB device and on two, checking that the second keeps every block of the
  // transformer resident on both devices, spread as `spread`.
  static std::pair<MemoryPlan, MemoryPlan> one_and_two_roomy(const std::vector<ComponentFacts>& job,
                                                             Spread spread) {
    MemoryPlan one = plan(job, first_only(two_h200(136)), Parallelism::Auto);
    MemoryPlan two = plan(job, two_h200(136), Parallelism::Auto);
    expect_within_budgets(two);
    const ComponentPlan& transformer = two.component(Component::Transformer);
    EXPECT_EQ(transformer.spread, spread);
    EXPECT_EQ(transformer.shares.size(), 2u);
    EXPECT_EQ(transformer.streamed_blocks, 0);
    return {one, two};
  }

  static QwenImageModel* model_;
};

QwenImageModel* MultiDevicePlanner::model_ = nullptr;

TEST_F(MultiDevicePlanner, TwoSmallCardsHoldTheTransformerInsteadOfStreamingIt) {
  // One 24 GiB card streams part of the 40.9 GB transformer every step; two hold all of it.
  const std::vector<ComponentFacts> job = facts(1024);
  MemoryPlan one = plan(job, first_only(two_h200(24)), Parallelism::Auto);
  ASSERT_GT(one.component(Component::Transformer).streamed_blocks, 0);
  MemoryPlan two = plan(job, two_h200(24), Parallelism::Auto);
  expect_within_budgets(two);
  const ComponentPlan& transformer = two.component(Component::Transformer);
  EXPECT_EQ(transformer.streamed_blocks, 0);
  EXPECT_EQ(transformer.spread, Spread::Pipeline);
  EXPECT_LT(two.predicted_step_s(), one.predicted_step_s());
  EXPECT_NE(two.describe()[2].find("pipeline split: cuda:0 blocks 0-"), std::string::npos)
      << two.describe()[2];
}

TEST_F(MultiDevicePlanner, PipelineSplitCoversEveryBlockOnceWithTheSharedWeightsFirst) {
  MemoryPlan split = plan(facts(1024), two_h200(32, 20), Parallelism::Pipeline);
  expect_within_budgets(split);
  const ComponentPlan& transformer = split.component(Component::Transformer);
  ASSERT_EQ(transformer.shares.size(), 2u);
  EXPECT_EQ(transformer.shares[0].device, Device::cuda(0));
  EXPECT_EQ(transformer.shares[1].device, Device::cuda(1));
  EXPECT_EQ(transformer.shares[0].first_block, 0);
  EXPECT_EQ(transformer.shares[1].first_block, transformer.shares[0].blocks);
  EXPECT_EQ(transformer.shares[0].blocks + transformer.shares[1].blocks, 60);
  EXPECT_TRUE(transformer.shares[0].holds_shared);
  EXPECT_FALSE(transformer.shares[1].holds_shared);
  // The roomier first card takes more of the blocks.
  EXPECT_GT(transformer.shares[0].blocks, transformer.shares[1].blocks);
}

TEST_F(MultiDevicePlanner, ComponentsGoWholeOntoDifferentDevices) {
  MemoryPlan apart = plan(facts(1024), two_h200(48), Parallelism::Components);
  expect_within_budgets(apart);
  const Device text = apart.component(Component::TextEncoder).device_or(Device::cpu());
  const Device transformer = apart.component(Component::Transformer).device_or(Device::cpu());
  EXPECT_NE(text, transformer);
  for (const ComponentPlan& part : apart.components)
    EXPECT_EQ(part.spread, Spread::One) << component_name(part.component);
  // Apart, neither has to leave the device between jobs: both stay resident.
  EXPECT_EQ(apart.component(Component::TextEncoder).residency, Residency::Resident);
  EXPECT_EQ(apart.component(Component::Transformer).residency, Residency::Resident);
  EXPECT_EQ(apart.component(Component::Transformer).streamed_blocks, 0);
}

TEST_F(MultiDevicePlanner, SequenceParallelNearlyHalvesAStepWithoutGuidanceAtLargeResolutions) {
  const std::vector<ComponentFacts> job = facts(2048, /*guided=*/false);
  const ComponentFacts& transformer_facts = job[1];
  ASSERT_EQ(transformer_facts.sequence_devices, 2);
  // Each device's share of the activations, measured by the split dry run, is well under the whole's.
  EXPECT_LT(transformer_facts.sequence_activation_bytes, 0.75 * transformer_facts.activation_bytes);
  EXPECT_GT(transformer_facts.sequence_activation_bytes, 0.25 * transformer_facts.activation_bytes);

  const auto [one, two] = one_and_two_roomy(job, Spread::Sequence);
  // Half the compute each, plus the exchanges: 4 x 100 MB of each device's hidden states per block.
  EXPECT_LT(two.predicted_step_s(), 0.65 * one.predicted_step_s());
  EXPECT_GT(two.predicted_step_s(), 0.5 * one.predicted_step_s());
  EXPECT_NE(two.describe()[2].find("sequence parallel over cuda:0, cuda:1"), std::string::npos);
}

TEST_F(MultiDevicePlanner, CfgParallelHalvesAGuidedStepWithoutExchangesInside) {
  const std::vector<ComponentFacts> job = facts(1024);
  // A device with one guidance half holds less than the two halves' measured peak.
  const ComponentFacts& transformer_facts = job[1];
  std::printf("activations: both halves %lld, one half %lld bytes\n",
              static_cast<long long>(transformer_facts.activation_bytes),
              static_cast<long long>(transformer_facts.guidance_activation_bytes));
  EXPECT_GT(transformer_facts.guidance_activation_bytes, 0);
  EXPECT_LT(transformer_facts.guidance_activation_bytes, transformer_facts.activation_bytes);
  const auto [one, two] = one_and_two_roomy(job, Spread::Guidance);
  EXPECT_LT(two.predicted_step_s(), 0.52 * one.predicted_step_s());
  EXPECT_NE(two.describe()[2].find("CFG parallel over cuda:0, cuda:1"), std::string::npos);
  // Sequence parallelism, forced, exchanges inside every block and comes out slower.
  EXPECT_GT(plan(job, two_h200(136), Parallelism::Sequence).predicted_step_s(), two.predicted_step_s());
  // Without guidance there is one pass per step and nothing to run apart.
  const std::string message =
      test::error_of([&] { plan(facts(1024, /*guided=*/false), two_h200(136), Parallelism::Guidance); });
  EXPECT_NE(message.find("this job has 1 (no guidance: CFG scale 1) and 2 devices"), std::string::npos)
      << message;
}

TEST_F(MultiDevicePlanner, SequenceParallelStreamsWhereTheReplicasDoNotFit) {
  MemoryPlan streamed = plan(facts(1024), two_h200(24), Parallelism::Sequence);
  expect_within_budgets(streamed);
  const ComponentPlan& transformer = streamed.component(Component::Transformer);
  EXPECT_EQ(transformer.spread, Spread::Sequence);
  EXPECT_GT(transformer.streamed_blocks, 0);
  EXPECT_EQ(transformer.shares[0].resident_blocks, transformer.shares[1].resident_blocks);
}

TEST_F(MultiDevicePlanner, NoneKeepsEverythingOnTheFirstDevice) {
  MemoryPlan first = plan(facts(1024), two_h200(136), Parallelism::None);
  for (const ComponentPlan& part : first.components) {
    for (const DeviceShare& share : part.shares)
      EXPECT_EQ(share.device, Device::cuda(0)) << component_name(part.component);
  }
  EXPECT_EQ(first.pools[1].predicted_peak_bytes, 0);
}

TEST_F(MultiDevicePlanner, ParallelismNeedsSeveralDevices) {
  PlanRequest request;
  request.parallelism = Parallelism::Sequence;
  const std::string message =
      test::error_of([&] { plan_memory(facts(1024), first_only(two_h200(136)), request); });
  EXPECT_NE(message.find("parallelism sequence needs several devices"), std::string::npos) << message;
  EXPECT_NE(message.find("--devices"), std::string::npos) << message;
}

TEST_F(MultiDevicePlanner, NoPlanFitsNamesEveryDevicesBudget) {
  const std::string message =
      test::error_of([&] { plan(facts(1024), two_h200(24), Parallelism::Pipeline, Strategy::Bf16Full); });
  EXPECT_NE(message.find("on its fullest device but the budgets are cuda:0 24.00 GiB + cuda:1 24.00 GiB"),
            std::string::npos)
      << message;
}

TEST_F(MultiDevicePlanner, ANarrowedPipelineKeepsItsSplitAndGivesUpBlocksInProportion) {
  const std::vector<ComponentFacts> job = facts(1024);
  const MachineFacts machine = two_h200(24);
  MemoryPlan split = plan(job, machine, Parallelism::Pipeline);
  MemoryPlan narrowed = split;
  narrowed.component(Component::Transformer).resident_blocks = 30;
  MemoryPlan evaluated = evaluate_plan(job, machine, narrowed);
  const ComponentPlan& transformer = evaluated.component(Component::Transformer);
  ASSERT_EQ(transformer.shares.size(), 2u);
  EXPECT_EQ(transformer.resident_blocks, 30);
  EXPECT_EQ(transformer.streamed_blocks, 30);
  for (size_t s = 0; s < 2; ++s) {
    const DeviceShare& before = split.component(Component::Transformer).shares[s];
    const DeviceShare& after = transformer.shares[s];
    EXPECT_EQ(after.blocks, before.blocks);
    EXPECT_NEAR(after.resident_blocks, before.resident_blocks / 2.0, 1.0);
    EXPECT_LT(after.placed_bytes, before.placed_bytes);
  }
}

}  // namespace
}  // namespace canvas
