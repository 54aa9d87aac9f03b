// The meta device: dry runs of the tiny models allocate what the CPU runs allocate, without computing.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "backend/meta/meta_backend.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/meta_weights.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen2_5_vl_vision.h"
#include "models/qwen_image_transformer.h"
#include "planning/dry_run.h"
#include "test_util.h"

namespace canvas {
namespace {

struct CpuPeak {
  int64_t total = 0;
  // Without the CPU backend's own scratch (widened operands, attention score chunks, index copies): what
  // the ops themselves allocate, which is all the meta backend reproduces.
  int64_t without_scratch = 0;
};

CpuPeak measure_cpu_peak(const std::function<void()>& run) {
  Allocator& cpu = allocator_for(Device::cpu());
  const int64_t before = cpu.in_use();
  int64_t scratch = 0, without_scratch_peak = before;
  cpu.set_listener([&](const AllocationEvent& event) {
    if (event.owner.role == MemoryRole::Scratch) scratch += event.bytes;
    without_scratch_peak = std::max(without_scratch_peak, event.in_use_after - scratch);
  });
  cpu.reset_peak();
  run();
  cpu.set_listener(nullptr);
  return {cpu.peak() - before, without_scratch_peak - before};
}

// `device_copies`: bytes of inputs the forward moves to its device and holds at its peak. The CPU run
// uses the host tensors in place; a meta run, like a GPU run, holds copies.
void expect_same_peaks(const char* what, int64_t meta_peak, const CpuPeak& cpu, int64_t device_copies = 0) {
  std::printf("[   peak   ] %-16s meta %8lld B, cpu %8lld B (%lld B without backend scratch)\n", what,
              static_cast<long long>(meta_peak), static_cast<long long>(cpu.total),
              static_cast<long long>(cpu.without_scratch));
  EXPECT_GT(meta_peak, 0) << what;
  EXPECT_EQ(meta_peak, cpu.without_scratch + device_copies) << what;
  EXPECT_LE(meta_peak - device_copies, cpu.total) << what;
}

TEST(MetaDevice, NamesAndMovesOntoMetaButNotOff) {
  register_meta_backend();
  register_meta_backend();  // idempotent
  EXPECT_EQ(Device::meta().str(), "meta");
  EXPECT_TRUE(Device::meta().is_meta());
  EXPECT_FALSE(Device::meta().is_cpu() || Device::meta().is_cuda() || Device::cpu().is_meta());

  Allocator& meta = allocator_for(Device::meta());
  const int64_t before = meta.in_use();
  Tensor host = Tensor::from_floats(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor moved = host.to(Device::meta());
  EXPECT_TRUE(moved.device().is_meta());
  EXPECT_EQ(moved.shape(), host.shape());
  EXPECT_EQ(moved.dtype(), DType::F32);
  EXPECT_EQ(meta.in_use() - before, host.nbytes());

  test::expect_contains(test::error_of([&] { moved.to_floats(); }), "meta tensors have no data");
  test::expect_contains(test::error_of([&] { moved.to(Device::cpu()); }), "meta tensors have no data");
  Tensor host_target = Tensor::zeros({2, 3}, DType::F32);
  EXPECT_THROW(ops::copy_into(moved, host_target), Error);
  EXPECT_THROW(ops::add(moved, host), Error);  // one op, two devices
}

TEST(MetaDevice, BackendIsUnboundedAndItsUploadsAreNoOps) {
  register_meta_backend();
  Backend& backend = backend_for(Device::meta());
  EXPECT_EQ(backend.device(), Device::meta());
  DeviceMemoryInfo info = backend.memory_info();
  EXPECT_GE(info.free_bytes, int64_t{1} << 60);
  EXPECT_EQ(info.free_bytes, info.total_bytes);
  std::unique_ptr<UploadQueue> queue = backend.create_upload_queue(0);
  Tensor source = Tensor::from_floats(std::vector<float>{1, 2}, {2});
  UploadTimes times;
  Fence fence = queue->upload({{source, Tensor::empty({2}, DType::F32, Device::meta())}}, nullptr, &times);
  EXPECT_NE(fence, nullptr);
  // Kernels that do nothing finish at once, so their timestamps are already passed.
  ASSERT_TRUE(times.start && times.end);
  EXPECT_TRUE(times.start->time() && times.end->time());
  EXPECT_TRUE(backend.compute_timestamp()->time());
  queue->compute_wait(fence);
  EXPECT_NE(queue->compute_fence(), nullptr);
  EXPECT_EQ(source.to_floats(), (std::vector<float>{1, 2}));
}

TEST(MetaDevice, HugePlacementReservesNoMemory) {
  register_meta_backend();
  Allocator& meta = allocator_for(Device::meta());
  const int64_t before = meta.in_use();
  const int64_t bytes = int64_t{40} << 30;  // more than this machine's RAM
  Tensor weights = Tensor::empty({bytes / 2}, DType::BF16, Device::meta());
  EXPECT_EQ(meta.in_use() - before, bytes);
  // A stray host read sees zeros rather than faulting.
  const auto* first = static_cast<const unsigned char*>(weights.raw_data());
  EXPECT_EQ(first[0], 0);
  EXPECT_EQ(first[bytes - 1], 0);
  weights = Tensor();
  EXPECT_EQ(meta.in_use(), before);
}

TEST(MetaDevice, BudgetRefusalLeavesTheWeightsInPlace) {
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t1_base");
  int64_t weight_bytes = 0;
  model.visit([&](const std::string&, Tensor& weight) { weight_bytes += weight.nbytes(); });
  register_meta_backend();
  Allocator& meta = allocator_for(Device::meta());
  const int64_t before = meta.in_use();
  meta.set_budget(before + weight_bytes / 2);  // refused halfway through the placement
  EXPECT_THROW(nn::MetaWeightsScope scope(model, "transformer"), OutOfMemoryError);
  meta.set_budget(std::nullopt);
  EXPECT_EQ(meta.in_use(), before);
  model.visit([](const std::string& name, Tensor& weight) { EXPECT_TRUE(weight.device().is_cpu()) << name; });
}

TEST(MetaDevice, WeightsScopeChargesTheComponentAndRestoresTheOriginals) {
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t1_base");
  std::vector<const void*> originals;
  int64_t weight_bytes = 0;
  model.visit([&](const std::string&, Tensor& weight) {
    originals.push_back(weight.raw_data());
    weight_bytes += weight.nbytes();
  });
  register_meta_backend();
  Allocator& meta = allocator_for(Device::meta());
  const int64_t before = meta.in_use();
  {
    nn::MetaWeightsScope scope(model, "transformer");
    model.visit([&](const std::string& name, Tensor& weight) {
      EXPECT_TRUE(weight.device().is_meta()) << name;
      EXPECT_EQ(weight.buffer()->owner().str(), "transformer/weights") << name;
    });
    EXPECT_EQ(meta.in_use() - before, weight_bytes);
    EXPECT_EQ(meta.usage_by_owner().at({"transformer", -1, MemoryRole::Weights}), weight_bytes);
  }
  EXPECT_EQ(meta.in_use(), before);
  std::vector<const void*> restored;
  model.visit([&](const std::string&, Tensor& weight) { restored.push_back(weight.raw_data()); });
  EXPECT_EQ(restored, originals);
}

TEST(MetaDevice, PlaceWeightsTreatsMetaAsADevice) {
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t1_base");
  const QwenImageTransformerConfig& config = model.config();
  int64_t f32_bytes = 0;
  model.visit([&](const std::string&, Tensor& weight) {
    ASSERT_EQ(weight.dtype(), DType::F32);
    f32_bytes += weight.nbytes();
  });
  register_meta_backend();
  Tensor text = Tensor::empty({1, 16, config.joint_attention_dim}, DType::F32, Device::meta());
  Tensor hidden = Tensor::empty({1, 1024, config.in_channels}, DType::F32, Device::meta());
  Tensor timestep = Tensor::from_floats(std::vector<float>{0.5f}, {1});
  int64_t f32_peak = 0;
  {
    nn::MetaWeightsScope scope(model, "transformer");
    f32_peak = measure_activation_peak([&] { model.forward(hidden, text, {}, timestep, {{1, 32, 32}}); });
  }

  // Unlike the CPU, where weights stay where they are, meta gets the activation-dtype copies a GPU gets.
  nn::place_weights(model, "transformer", Device::meta(), DType::BF16);
  model.visit([](const std::string& name, Tensor& weight) {
    EXPECT_TRUE(weight.device().is_meta()) << name;
    EXPECT_EQ(weight.dtype(), DType::BF16) << name;
  });
  EXPECT_EQ(allocator_for(Device::meta()).usage_by_owner().at({"transformer", -1, MemoryRole::Weights}),
            f32_bytes / 2);
  Tensor hidden_bf16 = hidden.to(DType::BF16), text_bf16 = text.to(DType::BF16);
  const int64_t bf16_peak = measure_activation_peak([&] {
    Tensor sample = model.forward(hidden_bf16, text_bf16, {}, timestep, {{1, 32, 32}});
    EXPECT_EQ(sample.dtype(), DType::BF16);
  });
  std::printf("[   peak   ] transformer 1024 image tokens: f32 %lld B, bf16 %lld B\n",
              static_cast<long long>(f32_peak), static_cast<long long>(bf16_peak));
  // Every activation, rotary tables included, follows the inputs' dtype.
  EXPECT_EQ(bf16_peak * 2, f32_peak);
}

TEST(MetaDevice, TransformerDryRunMatchesTheCpuPeak) {
  const std::string folder = "transformer/t3_batch2_padded_mask";
  QwenImageTransformer2DModel model = test::load_golden_transformer(folder);
  WeightSource golden = test::open_golden(folder);
  std::vector<ImageShape> shapes = test::first_sample_shapes(test::golden_json(folder).at("img_shapes"));
  Tensor hidden = golden.get("hidden_states"), text = golden.get("encoder_hidden_states");
  Tensor mask = golden.get("encoder_hidden_states_mask"), timestep = golden.get("timestep");

  Tensor expected;
  CpuPeak cpu = measure_cpu_peak([&] { expected = model.forward(hidden, text, mask, timestep, shapes); });
  nn::MetaWeightsScope scope(model, "transformer");
  Tensor sample;
  int64_t meta_peak =
      measure_activation_peak([&] { sample = model.forward(hidden, text, mask, timestep, shapes); });
  EXPECT_TRUE(sample.device().is_meta());
  EXPECT_EQ(sample.shape(), expected.shape());
  EXPECT_EQ(sample.dtype(), expected.dtype());
  expect_same_peaks("transformer t3", meta_peak, cpu);
}

TEST(MetaDevice, TextEncoderDryRunMatchesTheCpuPeak) {
  const std::string folder = "text_encoder/a_h4_kv2_untied";
  Qwen2_5_VLTextModel model(
      Qwen2_5_VLTextConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json"),
      test::open_golden_model(folder, /*text_encoder=*/true));
  WeightSource golden = test::open_golden(folder);
  Tensor input_ids = golden.get("input_ids"), attention_mask = golden.get("attention_mask");

  Tensor expected;
  CpuPeak cpu = measure_cpu_peak([&] { expected = model.forward(input_ids, attention_mask); });
  nn::MetaWeightsScope scope(model, "text_encoder");
  Tensor hidden;
  int64_t meta_peak = measure_activation_peak([&] { hidden = model.forward(input_ids, attention_mask); });
  EXPECT_TRUE(hidden.device().is_meta());
  EXPECT_EQ(hidden.shape(), expected.shape());
  EXPECT_EQ(hidden.dtype(), expected.dtype());
  // The causal mask's device copy lives through every layer.
  expect_same_peaks("text encoder a", meta_peak, cpu, attention_mask.nbytes());
}

TEST(MetaDevice, VisionTowerDryRunMatchesTheCpuPeak) {
  const std::string folder = "vision/tower_a_partial_windows";
  Qwen2_5_VisionTransformerPretrainedModel model(
      Qwen2_5_VLVisionConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json"),
      test::open_golden_model(folder, /*text_encoder=*/true));
  WeightSource golden = test::open_golden(folder);
  Tensor pixel_values = golden.get("pixel_values");
  const std::vector<std::array<int64_t, 3>> grids = {{1, 14, 10}, {1, 6, 12}};

  Tensor expected;
  CpuPeak cpu = measure_cpu_peak([&] { expected = model.forward(pixel_values, grids); });
  nn::MetaWeightsScope scope(model, "text_encoder");
  Tensor embeds;
  int64_t meta_peak = measure_activation_peak([&] { embeds = model.forward(pixel_values, grids); });
  EXPECT_TRUE(embeds.device().is_meta());
  EXPECT_EQ(embeds.shape(), expected.shape());
  // The pixel values' device copy is freed by the patch embedding, before the peak in the blocks.
  expect_same_peaks("vision tower a", meta_peak, cpu);
}

TEST(MetaDevice, VaeDecodeDryRunMatchesTheCpuPeak) {
  const auto dir = test::source_path("models/tiny-qwen-image/vae");
  AutoencoderKLQwenImage vae(AutoencoderKLQwenImageConfig::from_file(dir / "config.json"),
                             WeightSource::open(dir / "diffusion_pytorch_model.safetensors"));
  // The golden latents carry the reference's frame axis [B, C, 1, h, w]; decode takes one frame.
  Tensor latents = test::open_golden("vae/decode_8x8").get("latents").select(2, 0).contiguous();

  Tensor expected;
  CpuPeak cpu = measure_cpu_peak([&] { expected = vae.decode(latents); });
  nn::MetaWeightsScope scope(vae, "vae");
  Tensor decoded;
  int64_t meta_peak = measure_activation_peak([&] { decoded = vae.decode(latents); });
  EXPECT_TRUE(decoded.device().is_meta());
  EXPECT_EQ(decoded.shape(), expected.shape());
  EXPECT_EQ(decoded.dtype(), expected.dtype());
  expect_same_peaks("vae decode 8x8", meta_peak, cpu);
}

TEST(MetaDevice, TransformerPeakGrowsWithTheImage) {
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t1_base");
  const QwenImageTransformerConfig& config = model.config();
  nn::MetaWeightsScope scope(model, "transformer");
  // Inputs can live on meta too; only the timestep is read on the host.
  Tensor text = Tensor::empty({1, 16, config.joint_attention_dim}, DType::F32, Device::meta());
  Tensor timestep = Tensor::from_floats(std::vector<float>{0.5f}, {1});
  auto peak_for = [&](ImageShape shape) {
    Tensor hidden = Tensor::empty({1, shape.tokens(), config.in_channels}, DType::F32, Device::meta());
    return measure_activation_peak([&] { model.forward(hidden, text, {}, timestep, {shape}); });
  };
  const int64_t small = peak_for({1, 64, 64}), large = peak_for({1, 64, 128});
  const double ratio = static_cast<double>(large) / static_cast<double>(small);
  std::printf("[   peak   ] transformer 4096 image tokens %lld B, 8192 tokens %lld B (x%.3f)\n",
              static_cast<long long>(small), static_cast<long long>(large), ratio);
  // Attention on meta holds no score matrix, so activations grow linearly in the tokens; the 16 text
  // tokens keep the ratio a little under 2.
  EXPECT_GE(ratio, 1.95);
  EXPECT_LE(ratio, 2.0);
}

}  // namespace
}  // namespace canvas
