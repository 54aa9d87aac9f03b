// Memory plans on the tiny model, on the CPU: the budgeted CPU allocator stands in for a small device.
// Lossless plans (resident, offloaded, streamed, any mix) must give bit-identical results to the
// unconstrained run; quantized presets stay within their measured error.
#include <gtest/gtest.h>

#include <cstring>

#include "backend/backend.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

class MemoryPlanPipeline : public test::TinyPipelineSuite {
 protected:
  static MemoryOptions options(Strategy strategy, std::optional<int64_t> device_budget = std::nullopt) {
    MemoryOptions options;
    options.plan.strategy = strategy;
    options.device_budget_bytes = device_budget;
    return options;
  }
  static JobResult run(Strategy strategy, std::optional<int64_t> device_budget = std::nullopt,
                       ArrangementCache* cache = nullptr) {
    return text_to_image(*model_, request_, options(strategy, device_budget), {}, cache);
  }
};

TEST_F(MemoryPlanPipeline, UnconstrainedCpuPlanMapsEveryWeight) {
  for (const ComponentPlan& part : reference_->plan.components)
    EXPECT_EQ(part.residency, Residency::Mapped) << component_name(part.component);
  EXPECT_EQ(reference_->bytes_streamed, 0);
}

TEST_F(MemoryPlanPipeline, LosslessPresetsAreBitIdentical) {
  for (Strategy strategy : {Strategy::Bf16Full, Strategy::ModelOffload, Strategy::SequentialOffload}) {
    JobResult result = run(strategy);
    SCOPED_TRACE(std::string(strategy_name(strategy)));
    EXPECT_EQ(result.plan.strategy, strategy);
    EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
    EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
    for (const ComponentPlan& part : result.plan.components) EXPECT_NE(part.residency, Residency::Mapped);
  }
}

TEST_F(MemoryPlanPipeline, SequentialOffloadStreamsEveryBlockEachStep) {
  JobResult result = run(Strategy::SequentialOffload);
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  EXPECT_EQ(transformer.resident_blocks, 0);
  EXPECT_EQ(transformer.streamed_blocks, static_cast<int>(model_->transformer->blocks().size()));
  // Every step's blocks cross once (both guidance halves share them), plus the adaLN weights once.
  int64_t every_step = 0, once = 0;
  QwenImageTransformer2DModel network = *model_->transformer;
  network.visit([&](const std::string& name, Tensor& tensor) {
    if (!name.starts_with("transformer_blocks.")) return;
    bool modulation =
        name.find(".img_mod.") != std::string::npos || name.find(".txt_mod.") != std::string::npos;
    (modulation ? once : every_step) += tensor.nbytes();
  });
  EXPECT_GE(result.bytes_streamed, request_.sampling.steps * every_step + once);
  // Prefetching may fill the ring with the next cycle's first blocks before the phase ends, no more.
  EXPECT_LE(result.bytes_streamed, (request_.sampling.steps + 1) * every_step + once);
}

TEST_F(MemoryPlanPipeline, AnyMixOfResidentAndStreamedBlocksIsBitIdentical) {
  // The tiny model's blocks are too small for a budget to force a mix, so the mixes are set by hand on
  // the arrangement a lossless plan made; the next job of the same shape then runs on it.
  ArrangementCache cache;
  run(Strategy::ModelOffload, std::nullopt, &cache);
  const int transformer_blocks = static_cast<int>(model_->transformer->blocks().size());
  const int text_layers = static_cast<int>(model_->text_encoder->layers().size());
  ASSERT_GE(transformer_blocks, 2);
  for (int resident = 0; resident < transformer_blocks; ++resident) {
    for (int slots : {1, 2, 3}) {
      WeightArrangement& arrangement = *cache.arrangement;
      ComponentPlan transformer_plan = arrangement.plan().component(Component::Transformer);
      transformer_plan.resident_blocks = resident;
      transformer_plan.streamed_blocks = transformer_blocks - resident;
      transformer_plan.slots = slots;
      arrangement.release(Component::Transformer);
      arrangement.arrange(transformer_plan);
      ComponentPlan text_plan = arrangement.plan().component(Component::TextEncoder);
      text_plan.resident_blocks = text_layers - 1 - std::min(resident, text_layers - 1);
      text_plan.streamed_blocks = text_layers - text_plan.resident_blocks;
      text_plan.slots = slots;
      arrangement.release(Component::TextEncoder);
      arrangement.arrange(text_plan);

      JobResult result = run(Strategy::ModelOffload, std::nullopt, &cache);
      SCOPED_TRACE("resident blocks " + std::to_string(resident) + ", slots " + std::to_string(slots));
      ASSERT_EQ(result.plan.component(Component::Transformer).resident_blocks, resident);
      EXPECT_GT(result.bytes_streamed, 0);
      EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
      EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
    }
  }
}

TEST_F(MemoryPlanPipeline, PlannedPeakBoundsTheMeasuredPeak) {
  // The plan counts weights and activations; the backend's own scratch lives in its reserve.
  Allocator& allocator = allocator_for(Device::cpu());
  int64_t planned_in_use = 0, planned_peak = 0;
  allocator.set_listener([&](const AllocationEvent& event) {
    if (event.owner.role == MemoryRole::Scratch) return;
    planned_in_use += event.bytes;
    planned_peak = std::max(planned_peak, planned_in_use);
  });
  for (Strategy strategy : {Strategy::Bf16Full, Strategy::ModelOffload, Strategy::SequentialOffload}) {
    planned_in_use = planned_peak = 0;
    JobResult result = run(strategy);
    SCOPED_TRACE(std::string(strategy_name(strategy)));
    // On the CPU device, the inputs the pipeline builds on the host (token ids, noise, rotary tables) are
    // device memory too, which a GPU run would not charge there: a few KiB at this size.
    EXPECT_LE(planned_peak, result.plan.predicted_peak_bytes + (int64_t{32} << 10));
    // The plan is measured, not padded: it stays close to what the run used.
    EXPECT_GE(planned_peak, result.plan.predicted_peak_bytes * 9 / 10);
  }
  allocator.set_listener({});
}

TEST_F(MemoryPlanPipeline, ThePlanAndTheScratchReserveBoundEverythingAllocated) {
  // Everything the CPU allocates, the backend's scratch (GEMM blocks, convolution columns) included, stays
  // within the plan's peak plus the scratch reserve taken off the budget: at 256² the VAE's columns are
  // several times its planned activations.
  TextToImageRequest request = request_;
  request.width = request.height = 256;
  request.sampling.steps = 2;
  Allocator& allocator = allocator_for(Device::cpu());
  const int64_t before = allocator.in_use();
  allocator.reset_peak();
  JobResult result = text_to_image(*model_, request, {});
  const int64_t measured = allocator.peak() - before;
  const int64_t reserve = backend_for(Device::cpu()).scratch_reserve_bytes();
  std::printf("[ cpu peak ] measured %lld, planned %lld + reserve %lld\n", static_cast<long long>(measured),
              static_cast<long long>(result.plan.predicted_peak_bytes), static_cast<long long>(reserve));
  EXPECT_GT(measured, result.plan.predicted_peak_bytes);
  EXPECT_LE(measured, result.plan.predicted_peak_bytes + reserve);
}

TEST_F(MemoryPlanPipeline, QuantizedPresetsStayWithinTheirMeasuredError) {
  struct Case {
    Strategy strategy;
    double limit;
  };
  for (Case c : {Case{Strategy::Fp8, 5e-2}, Case{Strategy::Nf4, 2e-1}}) {
    JobResult result = run(c.strategy);
    double error = test::relative_error(result.latents, reference_->latents);
    std::printf("[ quantized ] %s latents rel error %.3g\n", std::string(strategy_name(c.strategy)).c_str(),
                error);
    EXPECT_GT(error, 0.0);
    EXPECT_LE(error, c.limit);
  }
  // A later lossless job starts again from the checkpoint's weights.
  EXPECT_TRUE(test::bit_identical(run(Strategy::ModelOffload).latents, reference_->latents));
}

TEST_F(MemoryPlanPipeline, ForcedPresetThatCannotFitNamesOneThatDoes) {
  JobResult streamed = run(Strategy::SequentialOffload);
  int64_t budget = streamed.plan.predicted_peak_bytes + allocator_for(Device::cpu()).in_use() +
                   backend_for(Device::cpu()).scratch_reserve_bytes() + 1024;
  try {
    run(Strategy::Bf16Full, budget);
    FAIL() << "bf16_full fitted a budget below its needs";
  } catch (const Error& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("bf16_full needs"), std::string::npos) << message;
    EXPECT_NE(message.find("_offload fits"), std::string::npos) << message;
  }
}

TEST_F(MemoryPlanPipeline, BudgetBelowTheActivationsFailsClearly) {
  // 4 KiB to plan with once the scratch reserve and the memory already held are taken off.
  const int64_t budget =
      allocator_for(Device::cpu()).in_use() + backend_for(Device::cpu()).scratch_reserve_bytes() + 4096;
  try {
    run(Strategy::Auto, budget);
    FAIL() << "a 4 KiB budget was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("no strategy fits"), std::string::npos) << error.what();
  }
  // A budget that leaves nothing at all is not a plan that fails to fit.
  try {
    run(Strategy::Auto, 4096);
    FAIL() << "a budget below the scratch reserve was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("nothing left to plan with on cpu"), std::string::npos)
        << error.what();
  }
  // The failed plan changed nothing: the next job runs as before.
  EXPECT_TRUE(test::bit_identical(run(Strategy::Auto).latents, reference_->latents));
}

}  // namespace
}  // namespace canvas
