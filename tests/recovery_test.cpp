// The recovery ladder on the tiny model, on the CPU: the budgeted CPU allocator stands in for a device
// that another process squeezes part way through a job. Lossless rungs must leave the image
// bit-identical, the others within their measured error, and a job with no rung left must fail naming
// what it needed. What a job needed is remembered for the next one with the same settings.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "pipeline/img2img.h"
#include "pipeline/recovery_ladder.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

class Recovery : public test::TinyPipelineSuite {
 protected:
  void SetUp() override { reset(Strategy::Bf16Full); }

  // A fresh start: nothing remembered, a device budget the plan fits easily.
  static void reset(Strategy strategy, Quality quality = Quality::Lossless) {
    options_ = {};
    options_.plan.strategy = strategy;
    options_.plan.quality = quality;
    options_.device_budget_bytes = int64_t{1} << 30;
    RecoveryMemory::forget(recovery_key(*model_, request_, options_));
  }

  static JobResult run(const TextToImageRequest& request, const JobObservers& observers = {},
                       ArrangementCache* cache = nullptr) {
    return text_to_image(*model_, request, options_, observers, cache);
  }

  // Runs the job; after step `squeeze_after` the device's budget shrinks to what is in use plus
  // `headroom`, as if another process took the rest, until that process lets go after the last step.
  static JobResult squeezed_job(int squeeze_after, int64_t headroom = 0, Profiler* profiler = nullptr) {
    JobObservers observers;
    observers.profiler = profiler;
    observers.on_step = [&](int done, int total) {
      Allocator& device = allocator_for(Device::cpu());
      if (done == squeeze_after) device.set_budget(device.in_use() + headroom);
      if (done == total) device.set_budget(options_.device_budget_bytes);
    };
    return run(request_, observers);
  }

  static bool took(const JobResult& result, const std::string& rung) {
    for (const std::string& line : result.recoveries)
      if (line.find(rung) != std::string::npos) return true;
    return false;
  }

  static MemoryOptions options_;
};

MemoryOptions Recovery::options_;

TEST_F(Recovery, SqueezeMidJobStreamsMoreBlocksAndKeepsTheImage) {
  const ComponentPlan resident = run(request_).plan.component(Component::Transformer);
  reset(Strategy::Bf16Full);
  Profiler profiler({});
  JobResult result = squeezed_job(1, 0, &profiler);
  for (const std::string& line : result.recoveries) std::printf("[ recovery ] %s\n", line.c_str());
  // Each recovery is an event on the job's timeline too.
  const nlohmann::json events = profiler.to_json()["events"];
  ASSERT_EQ(events.size(), result.recoveries.size());
  EXPECT_EQ(events.back()["name"], "recovery: " + result.recoveries.back());
  EXPECT_TRUE(took(result, "step 2: ")) << "the squeeze after step 1 must hit step 2";
  EXPECT_TRUE(took(result, "released cached memory"));
  EXPECT_TRUE(took(result, "streamed"));
  // The plan recorded is the narrowed one, its figures evaluated again.
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  EXPECT_GT(transformer.streamed_blocks, 0);
  EXPECT_LT(transformer.placed_bytes, resident.placed_bytes);
  EXPECT_EQ(static_cast<int>(result.timings.step_s.size()), request_.sampling.steps);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
  EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
}

TEST_F(Recovery, ASqueezeOnOneDeviceOfASequenceSplitStreamsOnEveryDeviceAndKeepsTheResult) {
  const Device second{DeviceType::CPU, 1};
  options_.extra_devices = {second};
  options_.plan.parallelism = Parallelism::Sequence;
  const JobResult unsqueezed = run(request_);
  JobObservers observers;
  observers.on_step = [&](int done, int total) {
    Allocator& device = allocator_for(second);
    if (done == 1) device.set_budget(device.in_use());
    if (done == total) device.set_budget(options_.device_budget_bytes);
  };
  JobResult result = run(request_, observers);
  for (const std::string& line : result.recoveries) std::printf("[ recovery ] %s\n", line.c_str());
  EXPECT_TRUE(took(result, "step 2: "));
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  ASSERT_EQ(transformer.spread, Spread::Sequence);
  ASSERT_EQ(transformer.shares.size(), 2u);
  // The devices run the blocks in lock step, so both stream what the squeezed one cannot hold.
  EXPECT_GT(transformer.streamed_blocks, 0);
  for (const DeviceShare& share : transformer.shares)
    EXPECT_EQ(share.resident_blocks, transformer.resident_blocks);
  EXPECT_TRUE(test::bit_identical(result.image, unsqueezed.image));
}

TEST_F(Recovery, TheNextJobWithTheSameSettingsStartsWhereTheLastRecovered) {
  JobResult squeezed = squeezed_job(1);
  const int resident = squeezed.plan.component(Component::Transformer).resident_blocks;
  ASSERT_LT(resident, static_cast<int>(model_->transformer->blocks().size()));
  std::optional<Degradation> remembered = RecoveryMemory::recall(recovery_key(*model_, request_, options_));
  ASSERT_TRUE(remembered.has_value());
  EXPECT_EQ(remembered->transformer_resident_blocks, resident);

  // A new process would read the same file; a job with no cache plans from scratch.
  JobResult next = run(request_);
  ASSERT_FALSE(next.recoveries.empty());
  EXPECT_NE(next.recoveries[0].find("starting where an earlier job"), std::string::npos)
      << next.recoveries[0];
  EXPECT_EQ(next.plan.component(Component::Transformer).resident_blocks, resident);
  EXPECT_TRUE(test::bit_identical(next.image, reference_->image));

  // Other settings are not affected, and forgetting starts from the top again.
  RecoveryMemory::forget(recovery_key(*model_, request_, options_));
  JobResult fresh = run(request_);
  EXPECT_TRUE(fresh.recoveries.empty());
  EXPECT_EQ(fresh.plan.component(Component::Transformer).streamed_blocks, 0);
}

TEST_F(Recovery, NoRungLeftFailsNamingTheMemoryNeeded) {
  // Everything streams already and nothing lossy is allowed: the ladder runs out.
  reset(Strategy::SequentialOffload);
  JobObservers observers;
  observers.on_step = [](int done, int) {
    Allocator& device = allocator_for(Device::cpu());
    if (done == 1) device.set_budget(device.in_use());
  };
  std::string message = test::error_of([&] { run(request_, observers); });
  EXPECT_NE(message.find("lowest rung"), std::string::npos) << message;
  EXPECT_NE(message.find("needed at least"), std::string::npos) << message;
  EXPECT_NE(message.find("step 2"), std::string::npos) << message;
  // The failed job left the model as it was.
  reset(Strategy::Bf16Full);
  EXPECT_TRUE(test::bit_identical(run(request_).image, reference_->image));
}

TEST_F(Recovery, FeedForwardChunksGiveTheSameTokens) {
  // The chunking rung changes how many tokens each GEMM sees, not any token's arithmetic.
  Degradation chunked;
  chunked.feed_forward_chunk = 5;
  ASSERT_TRUE(RecoveryMemory::remember(recovery_key(*model_, request_, options_), chunked));
  ArrangementCache cache;
  JobResult result = run(request_, {}, &cache);
  EXPECT_EQ(cache.arrangement->transformers().front()->forward_chunk_size(), 5);
  EXPECT_LE(test::relative_error(result.latents, reference_->latents), 1e-6);
  EXPECT_LE(test::relative_error(result.image, reference_->image), 1e-6);
}

TEST_F(Recovery, LowerPrecisionOnlyAsFarAsQualityAllows) {
  Degradation fp8;
  fp8.transformer_precision = WeightPrecision::Fp8;
  reset(Strategy::Bf16Full, Quality::Fp8);
  ASSERT_TRUE(RecoveryMemory::remember(recovery_key(*model_, request_, options_), fp8));
  JobResult result = run(request_);
  EXPECT_EQ(result.plan.component(Component::Transformer).precision, WeightPrecision::Fp8);
  const double error = test::relative_error(result.latents, reference_->latents);
  EXPECT_GT(error, 0.0);
  EXPECT_LE(error, 5e-2);

  // Squeezed to half a step's activations with everything streaming, lossless quality ends the ladder
  // before any quantization...
  reset(Strategy::SequentialOffload, Quality::Lossless);
  const ComponentPlan streamed = run(request_).plan.component(Component::Transformer);
  const int64_t headroom = (streamed.phase_peak_bytes - streamed.placed_bytes) / 2;
  reset(Strategy::SequentialOffload, Quality::Lossless);
  EXPECT_NE(test::error_of([&] { squeezed_job(1, headroom); }).find("lowest rung"), std::string::npos);
  // ...while fp8 quality lets the streamed weights' ring shrink instead.
  reset(Strategy::SequentialOffload, Quality::Fp8);
  JobResult squeezed = squeezed_job(1, headroom);
  EXPECT_TRUE(took(squeezed, "fp8 weights"));
  EXPECT_EQ(squeezed.plan.component(Component::Transformer).precision, WeightPrecision::Fp8);
  EXPECT_LE(test::relative_error(squeezed.latents, reference_->latents), 5e-2);
}

TEST_F(Recovery, VaeSqueezeDecodesInTiles) {
  // Large enough for the default 256-pixel tiles to split the image 3 x 3.
  TextToImageRequest request = request_;
  request.width = request.height = 512;
  const JobResult clean = run(request);
  // What each way of decoding these latents really takes on the CPU, its scratch included.
  Allocator& device = allocator_for(Device::cpu());
  auto peak_of = [&](const std::function<void()>& decode) {
    device.reset_peak();
    const int64_t before = device.in_use();
    decode();
    return device.peak() - before;
  };
  const AutoencoderKLQwenImage& vae = *model_->vae;
  Tensor latents = Tensor::zeros({1, vae.config().z_dim, 64, 64}, DType::F32);
  const int64_t whole = peak_of([&] { vae.decode(latents); });
  const int64_t tiled = peak_of([&] { vae.tiled_decode(latents, VaeTiling{}); });
  ASSERT_LT(tiled * 3 / 2, whole);
  reset(Strategy::Bf16Full);
  RecoveryMemory::forget(recovery_key(*model_, request, options_));
  JobObservers observers;
  observers.on_step = [&](int done, int total) {
    if (done == total) device.set_budget(device.in_use() + (whole + tiled) / 2);
  };
  JobResult result = run(request, observers);
  EXPECT_TRUE(took(result, "vae: tiled decode"));
  EXPECT_TRUE(test::bit_identical(result.latents, clean.latents));
  // Tiles blend across their overlaps, so the image moves a little, as the reference's tiled decode does.
  const double error = test::relative_error(result.image, clean.image);
  std::printf("[ recovery ] tiled VAE image rel error %.3g\n", error);
  EXPECT_GT(error, 0.0);
  EXPECT_LE(error, 5e-2);
  RecoveryMemory::forget(recovery_key(*model_, request, options_));
}

TEST_F(Recovery, VaeSqueezeEncodesInTiles) {
  // An img2img job large enough for the default 256-pixel tiles to split its picture 3 x 3.
  ImageToImageRequest request;
  request.sampling.prompt = request_.sampling.prompt;
  // Half of 4 steps: the first kept step's sigma is below 1, so the source's latents count.
  request.sampling.steps = 4;
  request.strength = 0.5;
  request.image.width = request.image.height = 512;
  for (int64_t i = 0; i < 512 * 512 * 3; ++i)
    request.image.pixels.push_back(static_cast<uint8_t>(i * 7 % 251));
  RecoveryMemory::forget(recovery_key(*model_, request, options_));
  const JobResult clean = image_to_image(*model_, request, options_);
  ASSERT_TRUE(clean.recoveries.empty());
  Allocator& device = allocator_for(Device::cpu());
  auto peak_of = [&](const std::function<void()>& encode) {
    device.reset_peak();
    const int64_t before = device.in_use();
    encode();
    return device.peak() - before;
  };
  const AutoencoderKLQwenImage& vae = *model_->vae;
  const Tensor picture = Tensor::zeros({1, 3, 512, 512}, DType::F32);
  const int64_t whole = peak_of([&] { vae.encode(picture); });
  const int64_t tiled = peak_of([&] { vae.encode(picture, VaeTiling{}); });
  ASSERT_LT(tiled * 3 / 2, whole);
  RecoveryMemory::forget(recovery_key(*model_, request, options_));
  // Squeezed from the plan to the first step, so that a whole encode no longer fits but a tiled one does.
  JobObservers observers;
  observers.on_plan = [&](const MemoryPlan&) { device.set_budget(device.in_use() + (whole + tiled) / 2); };
  observers.on_step = [&](int, int) { device.set_budget(options_.device_budget_bytes); };
  const JobResult result = image_to_image(*model_, request, options_, observers);
  EXPECT_TRUE(took(result, "vae: tiled encode"));
  EXPECT_FALSE(took(result, "vae: tiled decode"));
  // The tiles blend across their overlaps, so the source latents move a little, as the reference's do.
  const double error = test::relative_error(result.latents, clean.latents);
  std::printf("[ recovery ] tiled VAE encode latents rel error %.3g\n", error);
  EXPECT_GT(error, 0.0);
  EXPECT_LE(error, 5e-2);
  RecoveryMemory::forget(recovery_key(*model_, request, options_));
}

TEST_F(Recovery, DegradationsRoundTripAndRejectMalformedMemories) {
  Degradation all;
  all.text_encoder_resident_blocks = 1;
  all.transformer_resident_blocks = 3;
  all.feed_forward_chunk = 256;
  all.transformer_precision = WeightPrecision::Nf4;
  all.vae_encode_tiling = true;
  all.vae_decode_tiling = true;
  all.vae_on_cpu = true;
  EXPECT_EQ(Degradation::from_json(all.to_json()), all);
  EXPECT_EQ(all.describe().size(), 7u);
  EXPECT_FALSE(Degradation{}.any());
  EXPECT_THROW(Degradation::from_json(nlohmann::json::array()), Error);
  EXPECT_THROW(Degradation::from_json({{"feed_forward_chunk", -4}}), Error);
  EXPECT_THROW(Degradation::from_json({{"transformer_precision", "fp4"}}), Error);
  EXPECT_THROW(Degradation::from_json({{"vae_decode_tiling", "yes"}}), Error);
}

}  // namespace
}  // namespace canvas
