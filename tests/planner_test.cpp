// The memory planner on the full-size Qwen-Image layout: a sparse all-zero checkpoint gives the exact
// tensor sizes, the meta-device dry run gives this job's activation peaks, and a profile with the H200's
// measured speeds stands in for the machine. Plans are checked for fitting, for choosing what the
// strategy asks, and for getting no faster as memory shrinks.
#include <gtest/gtest.h>

#include "pipeline/job_facts.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

class FullSizePlanner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new QwenImageModel(test::full_size_planning_model("planner"));
    TextToImageRequest request;
    request.sampling.prompt = "a lighthouse on a cliff at dusk, oil painting";
    request.width = request.height = 1024;
    request.sampling.steps = 50;
    request.sampling.cfg_scale = 4.0f;
    facts_ = new std::vector<ComponentFacts>(
        job_facts(*model_, job_geometry(model_->configs, request), request.sampling.prompt, MemoryOptions{}));
  }
  static void TearDownTestSuite() {
    delete facts_;
    delete model_;
  }

  static MachineFacts h200(int64_t budget_bytes) { return test::h200_machine(budget_bytes); }
  static const ComponentFacts& fact(Component component) {
    for (const ComponentFacts& facts : *facts_)
      if (facts.component == component) return facts;
    throw Error("no facts for " + component_label(component));
  }

  static QwenImageModel* model_;
  static std::vector<ComponentFacts>* facts_;
};

QwenImageModel* FullSizePlanner::model_ = nullptr;
std::vector<ComponentFacts>* FullSizePlanner::facts_ = nullptr;

TEST_F(FullSizePlanner, WeightBytesComeFromTheCheckpoint) {
  const ComponentFacts& transformer = fact(Component::Transformer);
  ASSERT_EQ(transformer.blocks.size(), 60u);
  // 20,430,401,088 parameters in bf16.
  EXPECT_EQ(transformer.shared_bytes + transformer.block_bytes(WeightPrecision::Lossless),
            int64_t{20'430'401'088} * 2);
  // The adaLN projections, read once per job, are a third of every block.
  const BlockFacts& block = transformer.blocks[0];
  EXPECT_NEAR(static_cast<double>(block.once_bytes[0]) / (block.bytes[0] + block.once_bytes[0]), 1.0 / 3,
              0.01);
  // Quantized: about one byte per weight for fp8, a little over half a byte for nf4.
  const double lossless = static_cast<double>(block.bytes[0]);
  EXPECT_NEAR(block.bytes[static_cast<int>(WeightPrecision::Fp8)] / lossless, 0.5, 0.01);
  EXPECT_NEAR(block.bytes[static_cast<int>(WeightPrecision::Nf4)] / lossless, 0.28, 0.01);

  const ComponentFacts& text = fact(Component::TextEncoder);
  ASSERT_EQ(text.blocks.size(), 28u);
  EXPECT_EQ(text.shared_bytes + text.block_bytes(WeightPrecision::Lossless), int64_t{7'070'619'136} * 2);
  EXPECT_FALSE(text.quantizable);
}

TEST_F(FullSizePlanner, AStepIsBoundByItsProductsOrByItsAttentionScores) {
  // 60 blocks x 24 heads x (4096 image + the prompt's tokens)^2 query-key pairs per pass.
  const ComponentFacts& transformer = fact(Component::Transformer);
  const double joint = transformer.attention_scores_per_pass / (60.0 * 24.0);
  EXPECT_GT(joint, 4096.0 * 4096.0);
  EXPECT_LT(joint, 4200.0 * 4200.0);
  // Unmeasured (0), or fast as a GPU's fused attention: the products bound the step, as before.
  MachineFacts machine = h200(80 * kGiB);
  const double by_products = plan_memory(*facts_, machine, {}).predicted_step_s();
  machine.profile.attention_scores_per_s = 1e12;
  EXPECT_EQ(plan_memory(*facts_, machine, {}).predicted_step_s(), by_products);
  // Slow scores, as the CPU's kernel computes them at a small head dimension: they bound it.
  machine.profile.attention_scores_per_s = 1e9;
  const double by_scores = transformer.attention_scores_per_pass * transformer.passes_per_weight_read / 1e9;
  EXPECT_NEAR(plan_memory(*facts_, machine, {}).predicted_step_s(), by_scores, by_scores * 1e-9);
}

TEST_F(FullSizePlanner, DryRunMeasuresThisJobsActivations) {
  const int64_t transformer = fact(Component::Transformer).activation_bytes;
  const int64_t vae = fact(Component::Vae).activation_bytes;
  // 4096 image tokens x 3072 wide in bf16 is 24 MiB per tensor: a block holds a few dozen of them, and
  // the job keeps 60 x 50 x 2 modulation rows.
  EXPECT_GT(transformer, 256 << 20);
  EXPECT_LT(transformer, 4 * kGiB);
  // The f32 VAE's 1024x1024 feature maps are 512 MiB each at 128 channels.
  EXPECT_GT(vae, kGiB);
  EXPECT_LT(vae, 16 * kGiB);
  EXPECT_GT(fact(Component::TextEncoder).activation_bytes, 0);
}

TEST_F(FullSizePlanner, UnconstrainedH200HoldsEverythingResident) {
  MemoryPlan plan = plan_memory(*facts_, h200(136 * kGiB), {});
  EXPECT_EQ(plan.chosen, Strategy::Bf16Full);
  EXPECT_LE(plan.predicted_peak_bytes, 136 * kGiB);
  EXPECT_EQ(plan.component(Component::Transformer).streamed_blocks, 0);
}

TEST_F(FullSizePlanner, SmallerBudgetsStreamMoreAndAreNeverFaster) {
  // 48 GiB holds the transformer during its phase, offloading the text encoder between phases.
  MemoryPlan roomy = plan_memory(*facts_, h200(48 * kGiB), {});
  EXPECT_EQ(roomy.chosen, Strategy::ModelOffload);
  double previous_step = roomy.predicted_step_s();
  int previous_resident = 60;
  for (int64_t gib : {24, 16, 8, 4}) {
    MemoryPlan plan = plan_memory(*facts_, h200(gib * kGiB), {});
    SCOPED_TRACE(std::to_string(gib) + " GiB");
    for (const std::string& line : plan.describe()) std::printf("  %s\n", line.c_str());
    const ComponentPlan& transformer = plan.component(Component::Transformer);
    EXPECT_LE(plan.predicted_peak_bytes, gib * kGiB);
    EXPECT_EQ(transformer.precision, WeightPrecision::Lossless);
    EXPECT_GT(transformer.streamed_blocks, 0);
    EXPECT_LE(transformer.resident_blocks, previous_resident);
    EXPECT_GE(plan.predicted_step_s(), previous_step);
    previous_resident = transformer.resident_blocks;
    previous_step = plan.predicted_step_s();
  }
  // At 4 GiB even the text encoder (15 GB) streams.
  EXPECT_GT(plan_memory(*facts_, h200(4 * kGiB), {}).component(Component::TextEncoder).streamed_blocks, 0);
}

TEST_F(FullSizePlanner, FewBlocksStreamedHideBehindCompute) {
  // At 24 GiB most blocks stay; the rest copy while the resident ones compute. The prediction streams at
  // the staged rate measured on anonymous memory, the slowest source; the H200 measured 0.99x.
  MemoryPlan plan = plan_memory(*facts_, h200(24 * kGiB), {});
  MemoryPlan resident = plan_memory(*facts_, h200(136 * kGiB), {});
  EXPECT_LE(plan.predicted_step_s(), 1.25 * resident.predicted_step_s());
}

TEST_F(FullSizePlanner, QualityCeilingLetsAutoPickFp8WhenItAvoidsStreaming) {
  PlanRequest request;
  request.quality = Quality::Fp8;
  MemoryPlan plan = plan_memory(*facts_, h200(24 * kGiB), request);
  const ComponentPlan& transformer = plan.component(Component::Transformer);
  EXPECT_EQ(transformer.precision, WeightPrecision::Fp8);
  EXPECT_EQ(transformer.streamed_blocks, 0);
  EXPECT_EQ(plan.chosen, Strategy::Fp8);
  // Lossless stays the default: the same budget without the ceiling keeps bf16 weights.
  EXPECT_EQ(plan_memory(*facts_, h200(24 * kGiB), {}).component(Component::Transformer).precision,
            WeightPrecision::Lossless);
}

TEST_F(FullSizePlanner, PresetsPlaceAsTheirNamesSay) {
  auto plan_for = [&](Strategy strategy, int64_t gib) {
    PlanRequest request;
    request.strategy = strategy;
    return plan_memory(*facts_, h200(gib * kGiB), request);
  };
  MemoryPlan sequential = plan_for(Strategy::SequentialOffload, 8);
  EXPECT_EQ(sequential.component(Component::Transformer).resident_blocks, 0);
  EXPECT_EQ(sequential.component(Component::TextEncoder).resident_blocks, 0);
  MemoryPlan model_offload = plan_for(Strategy::ModelOffload, 48);
  EXPECT_EQ(model_offload.component(Component::Transformer).streamed_blocks, 0);
  EXPECT_EQ(model_offload.component(Component::Transformer).residency, Residency::Offloaded);
  MemoryPlan nf4 = plan_for(Strategy::Nf4, 16);
  EXPECT_EQ(nf4.component(Component::Transformer).precision, WeightPrecision::Nf4);
  EXPECT_EQ(nf4.quality, Quality::FourBit);
}

TEST_F(FullSizePlanner, ForcedPresetThatCannotFitSaysWhatWould) {
  PlanRequest request;
  request.strategy = Strategy::Bf16Full;
  try {
    plan_memory(*facts_, h200(24 * kGiB), request);
    FAIL() << "bf16_full fitted in 24 GiB";
  } catch (const Error& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("bf16_full needs"), std::string::npos) << message;
    EXPECT_NE(message.find("GiB on cuda:0 but the budget is 24.00 GiB"), std::string::npos) << message;
    EXPECT_NE(message.find("--strategy sequential_offload fits"), std::string::npos) << message;
  }
}

TEST_F(FullSizePlanner, BudgetThatLeavesNothingIsRefusedNamingTheDevice) {
  // A budget below the backend's scratch reserve arrives here negative; it is not a plan that fails to fit.
  MachineFacts machine = h200(-50 * (kGiB >> 10));
  std::string message = test::error_of([&] { plan_memory(*facts_, machine, {}); });
  EXPECT_NE(message.find("nothing left to plan with on cuda:0: its budget is -50.00 MiB once the backend's "
                         "scratch reserve"),
            std::string::npos)
      << message;
  machine.device_budget = 24 * kGiB;
  machine.extra_pools.push_back({Device::cuda(1), 0});
  message = test::error_of([&] { plan_memory(*facts_, machine, {}); });
  EXPECT_NE(message.find("nothing left to plan with on cuda:1"), std::string::npos) << message;
}

TEST_F(FullSizePlanner, WeightCopiesCountAgainstTheHostBudget) {
  // The bf16 checkpoint is used as mapped by a lossless GPU plan; fp8 keeps a quantized copy of every
  // block linear (20.3 B weights, a byte each) in host memory for the job.
  MachineFacts machine = h200(24 * kGiB);
  EXPECT_EQ(plan_memory(*facts_, machine, {}).host_copy_bytes, 0);
  const PlanRequest fp8{Strategy::Fp8, Quality::Fp8};
  const int64_t copies = plan_memory(*facts_, machine, fp8).host_copy_bytes;
  EXPECT_GT(copies, 18 * kGiB);
  EXPECT_LT(copies, 20 * kGiB);

  machine.host_budget = 8 * kGiB;
  const std::string message = test::error_of([&] { plan_memory(*facts_, machine, fp8); });
  EXPECT_NE(message.find("of host memory for its converted or quantized copies"), std::string::npos)
      << message;
  // auto, allowed fp8, takes what the host can hold instead.
  const MemoryPlan fitted = plan_memory(*facts_, machine, {Strategy::Auto, Quality::Fp8});
  EXPECT_EQ(fitted.component(Component::Transformer).precision, WeightPrecision::Lossless);
  EXPECT_EQ(fitted.host_copy_bytes, 0);
}

TEST_F(FullSizePlanner, StreamedBlocksReadFromLockedPagesWithinTheBudget) {
  // 8 GiB streams most of the transformer. Without a page-lock budget it all goes through the staging
  // ring; with one, whole streamed blocks in order are read from their locked pages at the pinned rate.
  MachineFacts machine = h200(8 * kGiB);
  const MemoryPlan staged = plan_memory(*facts_, machine, {});
  const ComponentPlan& staged_part = staged.component(Component::Transformer);
  ASSERT_GT(staged_part.streamed_blocks, 30);
  EXPECT_EQ(staged_part.page_locked_bytes, 0);

  machine.page_lock_budget = 100 * kGiB;
  const MemoryPlan locked = plan_memory(*facts_, machine, {});
  const ComponentPlan& locked_part = locked.component(Component::Transformer);
  const int64_t block_bytes = fact(Component::Transformer).blocks[0].bytes[0];
  EXPECT_EQ(locked_part.page_locked_bytes, locked_part.streamed_blocks * block_bytes);
  EXPECT_LT(locked_part.predicted_pass_s, staged_part.predicted_pass_s * 0.6);
  // Only the transformer, streamed on every step, takes the budget.
  EXPECT_EQ(locked.component(Component::TextEncoder).page_locked_bytes, 0);
  bool described = false;
  for (const std::string& line : locked.describe())
    described |= line.find("locked in place") != std::string::npos;
  EXPECT_TRUE(described);

  // A budget of three and a half blocks locks three.
  machine.page_lock_budget = block_bytes * 7 / 2;
  EXPECT_EQ(plan_memory(*facts_, machine, {}).component(Component::Transformer).page_locked_bytes,
            3 * block_bytes);
}

}  // namespace
}  // namespace canvas
