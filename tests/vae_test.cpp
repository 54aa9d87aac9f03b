#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "io/json_config.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/meta_weights.h"
#include "planning/dry_run.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

constexpr double kTolerance = 1e-4;

fs::path tiny_vae_dir() {
  return test::source_path("models/tiny-qwen-image/vae");
}
fs::path alt_vae_dir() {
  return test::source_path("tests/golden/vae/alt_cfg");
}

struct LoadedVae {
  AutoencoderKLQwenImageConfig config;
  WeightSource weights;
  std::unique_ptr<AutoencoderKLQwenImage> vae;
};

LoadedVae load_vae(const fs::path& dir) {
  LoadedVae loaded{AutoencoderKLQwenImageConfig::from_file(dir / "config.json"),
                   WeightSource::open(dir / "diffusion_pytorch_model.safetensors"), nullptr};
  loaded.vae = std::make_unique<AutoencoderKLQwenImage>(loaded.config, loaded.weights);
  return loaded;
}

const LoadedVae& tiny_vae() {
  static const LoadedVae loaded = load_vae(tiny_vae_dir());
  return loaded;
}

const LoadedVae& alt_vae() {
  static const LoadedVae loaded = load_vae(alt_vae_dir());
  return loaded;
}

// The golden tensors carry the reference's frame axis [B, C, 1, H, W]; the engine drops it.
Tensor golden_frame(const WeightSource& golden, const std::string& name) {
  Tensor tensor = golden.get(name);
  EXPECT_EQ(tensor.ndim(), 5) << name;
  EXPECT_EQ(tensor.dim(2), 1) << name;
  return tensor.select(2, 0);
}

// The whole tensor's L2 relative error (test::relative_error) against the reference, printed for the log.
void expect_matches_reference(const std::string& what, const Tensor& ours, const Tensor& reference) {
  EXPECT_EQ(shape_str(ours.shape()), shape_str(reference.shape()));
  double error = ours.shape() == reference.shape() ? test::relative_error(ours, reference) : INFINITY;
  std::printf("[   VAE    ] %-36s relative error %.3g\n", what.c_str(), error);
  EXPECT_LE(error, kTolerance) << what;
}

void check_decode(const LoadedVae& loaded, const std::string& folder) {
  WeightSource golden = test::open_golden(folder);
  Tensor decoded = loaded.vae->decode(golden_frame(golden, "latents"));
  expect_matches_reference(folder + " decoded", decoded, golden_frame(golden, "decoded"));
  std::vector<float> values = decoded.to_floats();
  for (float value : values) ASSERT_TRUE(value >= -1.0f && value <= 1.0f) << value;
}

void check_encode(const LoadedVae& loaded, const std::string& folder) {
  WeightSource golden = test::open_golden(folder);
  Tensor image = golden_frame(golden, "image");
  QwenImageLatentDistribution posterior = loaded.vae->encode(image);
  expect_matches_reference(folder + " posterior_mean", posterior.mean,
                           golden_frame(golden, "posterior_mean"));
  expect_matches_reference(folder + " posterior_logvar", posterior.logvar,
                           golden_frame(golden, "posterior_logvar"));
  EXPECT_EQ(posterior.mean.to_floats(), loaded.vae->encode_mean(image).to_floats());
}

TEST(VaeTest, ConfigReadsEveryField) {
  const AutoencoderKLQwenImageConfig& config = tiny_vae().config;
  EXPECT_EQ(config.base_dim, 4);
  EXPECT_EQ(config.z_dim, 16);
  EXPECT_EQ(config.dim_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(config.num_res_blocks, 2);
  EXPECT_TRUE(config.attn_scales.empty());
  EXPECT_EQ(config.temperal_downsample, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(config.input_channels, 3);
  EXPECT_EQ(config.spatial_compression_ratio(), 8);
  ASSERT_EQ(config.latents_mean.size(), 16u);
  EXPECT_EQ(config.latents_mean[0], -0.7571f);
  EXPECT_EQ(config.latents_std[15], 1.916f);
}

TEST(VaeTest, DecodeMatchesReference) {
  check_decode(tiny_vae(), "vae/decode_8x8");
  check_decode(tiny_vae(), "vae/decode_6x10");
}

TEST(VaeTest, EncodeMatchesReference) {
  check_encode(tiny_vae(), "vae/encode_64x64");
  check_encode(tiny_vae(), "vae/encode_48x80");
}

TEST(VaeTest, SecondConfigMatchesReference) {
  check_decode(alt_vae(), "vae/alt_cfg/decode_5x7");
  check_encode(alt_vae(), "vae/alt_cfg/encode_40x56");
}

TEST(VaeTest, BatchedDecodeMatchesPerImageDecode) {
  WeightSource golden = test::open_golden("vae/decode_8x8");
  Tensor latents = golden_frame(golden, "latents");
  Tensor pair[] = {latents, ops::scale(latents, 0.5f)};
  Tensor decoded = tiny_vae().vae->decode(ops::concat(pair, 0));
  expect_matches_reference("batch row 0", decoded.slice(0, 0, 1), tiny_vae().vae->decode(pair[0]));
  expect_matches_reference("batch row 1", decoded.slice(0, 1, 2), tiny_vae().vae->decode(pair[1]));
}

// The pipeline's packed final latents, unpacked to [1, 16, h, w] as QwenImagePipeline._unpack_latents does.
Tensor unpack_latents(const Tensor& packed, int64_t height, int64_t width) {
  const int64_t channels = packed.dim(2) / 4;
  return packed.view({1, height / 2, width / 2, channels, 2, 2})
      .permute({0, 3, 1, 4, 2, 5})
      .reshape({1, channels, height, width});
}

TEST(VaeTest, LatentScalingMatchesPipeline) {
  for (auto [folder, height, width] :
       {std::tuple{"a_64x64_nocfg_seed42", 8, 8}, std::tuple{"c_96x64_cfg4_neg_seed123", 8, 12}}) {
    WeightSource golden = test::open_golden(std::string("pipeline/") + folder);
    Tensor latents = unpack_latents(golden.get("latents"), height, width);
    Tensor vae_input = tiny_vae().vae->denormalize_latents(latents);
    // Same arithmetic as the pipeline, so the same bits.
    EXPECT_EQ(vae_input.to_floats(), golden_frame(golden, "vae_input").to_floats()) << folder;
    expect_matches_reference(std::string(folder) + " normalize round trip",
                             tiny_vae().vae->normalize_latents(vae_input), latents);
    expect_matches_reference(std::string(folder) + " decoded", tiny_vae().vae->decode(vae_input),
                             golden_frame(golden, "decoded"));
  }
}

TEST(VaeTest, VisitsEveryCheckpointTensorButTheTemporalConvs) {
  LoadedVae loaded = load_vae(tiny_vae_dir());
  std::set<std::string> visited;
  loaded.vae->visit(
      [&](const std::string& name, Tensor&) { EXPECT_TRUE(visited.insert(name).second) << name; });
  std::set<std::string> expected;
  for (const std::string& name : loaded.weights.names()) {
    if (name.find(".time_conv.") == std::string::npos) expected.insert(name);
  }
  EXPECT_EQ(visited, expected);
}

TEST(VaeTest, ChargesConvertedKernelsToTheVaeWeights) {
  const MemoryOwner vae_weights{"vae", -1, MemoryRole::Weights};
  Allocator& allocator = allocator_for(Device::cpu());
  auto charged = [&] {
    auto usage = allocator.usage_by_owner();
    auto found = usage.find(vae_weights);
    return found == usage.end() ? int64_t{0} : found->second;
  };
  const int64_t before = charged();
  LoadedVae loaded = load_vae(tiny_vae_dir());
  // Only kernels with more than one temporal tap need a copy; the others stay views of the checkpoint.
  int64_t expected = 0;
  loaded.vae->visit([&](const std::string& name, Tensor& tensor) {
    const Shape& stored = loaded.weights.info(name).shape;
    if (stored.size() == 5 && stored[2] > 1) expected += tensor.nbytes();
  });
  EXPECT_GT(expected, 0);
  EXPECT_EQ(charged() - before, expected);
}

// The published checkpoint stores bf16 weights; they must give what the same values in f32 give.
TEST(VaeTest, Bf16WeightsMatchTheirF32Values) {
  const LoadedVae& reference = tiny_vae();
  std::vector<std::pair<std::string, Tensor>> bf16, rounded;
  for (const std::string& name : reference.weights.names()) {
    Tensor narrowed = reference.weights.get(name).to(DType::BF16);
    bf16.emplace_back(name, narrowed);
    rounded.emplace_back(name, narrowed.to(DType::F32));
  }
  const fs::path dir = test::scratch_dir("vae_bf16");
  write_safetensors(dir / "bf16.safetensors", bf16);
  write_safetensors(dir / "rounded.safetensors", rounded);
  AutoencoderKLQwenImage bf16_vae(reference.config, WeightSource::open(dir / "bf16.safetensors"));
  AutoencoderKLQwenImage rounded_vae(reference.config, WeightSource::open(dir / "rounded.safetensors"));

  WeightSource golden = test::open_golden("vae/decode_6x10");
  Tensor latents = golden_frame(golden, "latents");
  double error = test::relative_error(bf16_vae.decode(latents), rounded_vae.decode(latents));
  EXPECT_LE(error, 1e-6);
  Tensor image = golden_frame(test::open_golden("vae/encode_48x80"), "image");
  error = test::relative_error(bf16_vae.encode_mean(image), rounded_vae.encode_mean(image));
  EXPECT_LE(error, 1e-6);
}

TEST(VaeTest, RunsInTheActivationDtype) {
  WeightSource golden = test::open_golden("vae/decode_6x10");
  Tensor latents = golden_frame(golden, "latents");
  Tensor decoded = tiny_vae().vae->decode(latents.to(DType::BF16));
  EXPECT_EQ(decoded.dtype(), DType::BF16);
  double error = test::relative_error(decoded, golden_frame(golden, "decoded"));
  std::printf("[   VAE    ] bf16 activations decode vs f32 reference: relative error %.3g\n", error);
  EXPECT_LE(error, 5e-2);
}

TEST(VaeTest, RejectsWrongInputShapes) {
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  test::expect_contains(test::error_of([&] {
                          vae.decode(Tensor::zeros({1, 16, 1, 4, 4}, DType::F32));
                        }),
                        "frame axis dropped; got [1, 16, 1, 4, 4]");
  test::expect_contains(test::error_of([&] {
                          vae.decode(Tensor::zeros({1, 4, 4, 4}, DType::F32));
                        }),
                        "VAE decode takes latents [B, 16, h, w], got [1, 4, 4, 4]");
  test::expect_contains(test::error_of([&] {
                          vae.decode(Tensor::zeros({16, 4, 4}, DType::F32));
                        }),
                        "got [16, 4, 4]");
  test::expect_contains(test::error_of([&] {
                          vae.encode(Tensor::zeros({1, 4, 16, 16}, DType::F32));
                        }),
                        "VAE encode takes images [B, 3, H, W], got [1, 4, 16, 16]");
  test::expect_contains(test::error_of([&] {
                          vae.encode_mean(Tensor::zeros({1, 3, 1, 16, 16}, DType::F32));
                        }),
                        "frame axis dropped");
  test::expect_contains(test::error_of([&] {
                          vae.encode(Tensor::zeros({1, 3, 7, 16}, DType::F32));
                        }),
                        "at least 8x8 pixels, got [1, 3, 7, 16]");
  test::expect_contains(test::error_of([&] {
                          vae.denormalize_latents(Tensor::zeros({1, 15, 2, 2}, DType::F32));
                        }),
                        "[B, 16, h, w], got [1, 15, 2, 2]");
}

constexpr char kTiledGolden[] = "vae/decode_tiled_10x11";

VaeTiling golden_tiling() {
  const nlohmann::json tiling = test::golden_json(kTiledGolden).at("tiling");
  return {tiling.at("tile_sample_min_height").get<int64_t>(),
          tiling.at("tile_sample_min_width").get<int64_t>(),
          tiling.at("tile_sample_stride_height").get<int64_t>(),
          tiling.at("tile_sample_stride_width").get<int64_t>()};
}

int64_t count_beyond_unit(const Tensor& image) {
  std::vector<float> values = image.to_floats();
  return std::count_if(values.begin(), values.end(), [](float value) { return std::abs(value) > 1.0f; });
}

TEST(VaeTest, TiledDecodeMatchesReference) {
  WeightSource golden = test::open_golden(kTiledGolden);
  const Tensor latents = golden_frame(golden, "latents");
  const Tensor expected = golden_frame(golden, "decoded");
  const Tensor tiled = tiny_vae().vae->tiled_decode(latents, golden_tiling());
  expect_matches_reference(std::string(kTiledGolden) + " decoded", tiled, expected);
  // The reference's tiled path skips decode's clamp, and the golden has pixels beyond [-1, 1] to show it.
  EXPECT_GT(count_beyond_unit(expected), 0);
  EXPECT_EQ(count_beyond_unit(tiled), count_beyond_unit(expected));
  // The seams really are blended tiles, not a whole-image decode.
  EXPECT_GT(test::relative_error(ops::clamp(tiled, -1.0f, 1.0f), tiny_vae().vae->decode(latents)), 1e-3);
}

TEST(VaeTest, TiledDecodeRunsInTheActivationDtype) {
  WeightSource golden = test::open_golden(kTiledGolden);
  Tensor tiled =
      tiny_vae().vae->tiled_decode(golden_frame(golden, "latents").to(DType::BF16), golden_tiling());
  EXPECT_EQ(tiled.dtype(), DType::BF16);
  EXPECT_LE(test::relative_error(tiled, golden_frame(golden, "decoded")), 5e-2);
}

TEST(VaeTest, TiledDecodeOfOneTileIsDecode) {
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  const Tensor latents = golden_frame(test::open_golden("vae/decode_6x10"), "latents");
  const Tensor decoded = vae.decode(latents);
  EXPECT_TRUE(test::bit_identical(vae.tiled_decode(latents, VaeTiling{}), decoded));
  // A tile of exactly the image's 48x80 pixels still holds it whole; one latent column less does not.
  EXPECT_TRUE(test::bit_identical(vae.tiled_decode(latents, {48, 80, 32, 64}), decoded));
  EXPECT_FALSE(test::bit_identical(vae.tiled_decode(latents, {48, 72, 32, 64}), decoded));
}

// Deterministic latents of a given size, in the range the pipeline hands the VAE.
Tensor wavy_latents(int64_t height, int64_t width) {
  std::vector<float> values(static_cast<size_t>(16 * height * width));
  for (size_t i = 0; i < values.size(); ++i) values[i] = 2.0f * std::sin(0.37f * static_cast<float>(i));
  return Tensor::from_floats(values, {1, 16, height, width});
}

int64_t cpu_activation_peak(const std::function<void()>& run) {
  Allocator& cpu = allocator_for(Device::cpu());
  const int64_t before = cpu.in_use();
  cpu.reset_peak();
  run();
  return cpu.peak() - before;
}

TEST(VaeTest, TiledDecodeLowersTheActivationPeak) {
  // 256x256 pixels in 64-pixel tiles: each tile holds a sixteenth of the image's activations.
  const Tensor latents = wavy_latents(32, 32);
  const VaeTiling tiling{64, 64, 48, 48};
  LoadedVae loaded = load_vae(tiny_vae_dir());
  const AutoencoderKLQwenImage& vae = *loaded.vae;
  Tensor decoded, tiled;
  const int64_t whole_peak = cpu_activation_peak([&] { decoded = vae.decode(latents); });
  const int64_t tiled_peak = cpu_activation_peak([&] { tiled = vae.tiled_decode(latents, tiling); });
  std::printf("[   VAE    ] 32x32 latents, CPU activation peak: decode %lld B, tiled %lld B (%.1f%%)\n",
              static_cast<long long>(whole_peak), static_cast<long long>(tiled_peak),
              100.0 * static_cast<double>(tiled_peak) / static_cast<double>(whole_peak));
  EXPECT_EQ(tiled.shape(), decoded.shape());
  EXPECT_LT(3 * tiled_peak, whole_peak);

  // The planner's dry run sees the same saving.
  nn::MetaWeightsScope meta(*loaded.vae, "vae");
  const int64_t meta_whole_peak = measure_activation_peak([&] { vae.decode(latents); });
  const int64_t meta_tiled_peak = measure_activation_peak([&] { tiled = vae.tiled_decode(latents, tiling); });
  std::printf("[   VAE    ] meta dry run: decode %lld B, tiled %lld B\n",
              static_cast<long long>(meta_whole_peak), static_cast<long long>(meta_tiled_peak));
  EXPECT_TRUE(tiled.device().is_meta());
  EXPECT_EQ(tiled.shape(), decoded.shape());
  EXPECT_LT(3 * meta_tiled_peak, meta_whole_peak);
}

constexpr char kTiledEncodeGolden[] = "vae/encode_tiled_80x88";

TEST(VaeTest, TiledEncodeMatchesReference) {
  WeightSource golden = test::open_golden(kTiledEncodeGolden);
  const Tensor image = golden_frame(golden, "image");
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  const QwenImageLatentDistribution tiled = vae.encode(image, golden_tiling());
  expect_matches_reference(std::string(kTiledEncodeGolden) + " mean", tiled.mean,
                           golden_frame(golden, "mean"));
  expect_matches_reference(std::string(kTiledEncodeGolden) + " logvar", tiled.logvar,
                           golden_frame(golden, "logvar"));
  EXPECT_EQ(tiled.mean.to_floats(), vae.encode_mean(image, golden_tiling()).to_floats());
  // The seams really are blended tiles, not a whole-picture encode.
  EXPECT_GT(test::relative_error(vae.encode(image).mean, tiled.mean), 1e-2);
}

TEST(VaeTest, TiledEncodeOfOneTileIsEncode) {
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  const Tensor image = golden_frame(test::open_golden(kTiledEncodeGolden), "image");
  const Tensor whole = vae.encode_mean(image);
  EXPECT_TRUE(test::bit_identical(vae.encode_mean(image, VaeTiling{}), whole));
  EXPECT_TRUE(test::bit_identical(vae.encode_mean(image, VaeTiling{80, 88, 64, 64}), whole));
  EXPECT_FALSE(test::bit_identical(vae.encode_mean(image, VaeTiling{80, 80, 64, 64}), whole));
}

TEST(VaeTest, TiledEncodeLowersTheActivationPeak) {
  // 256x256 pixels in 64-pixel tiles, in a dry run as the planner measures it.
  LoadedVae loaded = load_vae(tiny_vae_dir());
  const AutoencoderKLQwenImage& vae = *loaded.vae;
  nn::MetaWeightsScope meta(*loaded.vae, "vae");
  const Tensor image = Tensor::empty({1, 3, 256, 256}, DType::F32, Device::meta());
  Tensor whole, tiled;
  const int64_t whole_peak = measure_activation_peak([&] { whole = vae.encode(image).mean; });
  const int64_t tiled_peak = measure_activation_peak([&] {
    tiled = vae.encode(image, VaeTiling{64, 64, 48, 48}).mean;
  });
  std::printf("[   VAE    ] 256x256 encode, meta dry run: whole %lld B, tiled %lld B\n",
              static_cast<long long>(whole_peak), static_cast<long long>(tiled_peak));
  EXPECT_EQ(tiled.shape(), whole.shape());
  EXPECT_LT(3 * tiled_peak, whole_peak);
}

TEST(VaeTest, TiledEncodeNeedsWholeLatents) {
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  test::expect_contains(test::error_of([&] {
                          vae.encode(Tensor::zeros({1, 3, 100, 36}, DType::F32), VaeTiling{64, 64, 48, 48});
                        }),
                        "multiples of 8 pixels), got [1, 3, 100, 36]");
}

TEST(VaeTest, RejectsBadTilingParameters) {
  const AutoencoderKLQwenImage& vae = *tiny_vae().vae;
  const Tensor latents = Tensor::zeros({1, 16, 40, 40}, DType::F32);
  auto error_for = [&](const VaeTiling& tiling) {
    return test::error_of([&] { vae.tiled_decode(latents, tiling); });
  };
  test::expect_contains(error_for({0, 256, 192, 192}),
                        "VAE tiling: tile_sample_min_height must be a positive multiple of the VAE's spatial "
                        "compression ratio (8 pixels), got 0");
  test::expect_contains(error_for({256, -64, 192, 192}), "tile_sample_min_width must be a positive multiple");
  test::expect_contains(error_for({256, 256, 100, 192}),
                        "tile_sample_stride_height must be a positive multiple");
  test::expect_contains(error_for({256, 256, 192, 190}),
                        "tile_sample_stride_width must be a positive multiple");
  test::expect_contains(
      error_for({256, 256, 264, 192}),
      "tile_sample_stride_height (264) exceeds tile_sample_min_height (256): the tiles would leave "
      "gaps");
  test::expect_contains(error_for({256, 128, 192, 136}),
                        "tile_sample_stride_width (136) exceeds tile_sample_min_width");
  // Tiles are checked even when the latents fit in one, so a bad setting fails on the first image.
  test::expect_contains(test::error_of([&] {
                          vae.tiled_decode(Tensor::zeros({1, 16, 4, 4}, DType::F32), {256, 256, 192, 0});
                        }),
                        "tile_sample_stride_width must be a positive multiple");
  test::expect_contains(test::error_of([&] {
                          vae.tiled_decode(Tensor::zeros({1, 4, 40, 40}, DType::F32), VaeTiling{});
                        }),
                        "VAE decode takes latents [B, 16, h, w], got [1, 4, 40, 40]");
}

TEST(VaeTest, RejectsWeightsOfAnotherConfig) {
  AutoencoderKLQwenImageConfig alt_config =
      AutoencoderKLQwenImageConfig::from_file(alt_vae_dir() / "config.json");
  std::string message = test::error_of([&] { AutoencoderKLQwenImage vae(alt_config, tiny_vae().weights); });
  test::expect_contains(message, "encoder.conv_in.weight");
  test::expect_contains(message, "[3, 3, 3, 3, 3]");

  // Same channel widths, one residual block too many per stage: the first missing tensor is named.
  AutoencoderKLQwenImageConfig deeper = alt_vae().config;
  deeper.num_res_blocks = 2;
  test::expect_contains(test::error_of([&] { AutoencoderKLQwenImage vae(deeper, alt_vae().weights); }),
                        "'encoder.down_blocks.1.norm1.gamma' not found");
}

TEST(VaeTest, RejectsInvalidConfigs) {
  const nlohmann::json valid = read_json_file(tiny_vae_dir() / "config.json");
  auto error_after = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json edited = valid;
    edit(edited);
    return test::error_of([&] { AutoencoderKLQwenImageConfig::from_json(edited, "vae/config.json"); });
  };
  test::expect_contains(error_after([](nlohmann::json& c) { c["attn_scales"] = {1.0}; }),
                        "attn_scales must be empty");
  test::expect_contains(error_after([](nlohmann::json& c) {
                          c["temperal_downsample"] = {true, true};
                        }),
                        "one entry per downsampling stage (3), got 2");
  test::expect_contains(error_after([](nlohmann::json& c) {
                          c["temperal_downsample"] = {1, 0, 0};
                        }),
                        "should be true or false");
  test::expect_contains(
      error_after([](nlohmann::json& c) { c["latents_std"] = std::vector<double>(15, 1.0); }),
      "need z_dim (16) entries");
  test::expect_contains(error_after([](nlohmann::json& c) { c.erase("latents_mean"); }),
                        "missing key \"latents_mean\"");
  test::expect_contains(error_after([](nlohmann::json& c) { c["z_dim"] = "16"; }),
                        "key \"z_dim\" in 'vae/config.json'");
  test::expect_contains(error_after([](nlohmann::json& c) { c["dim_mult"] = nlohmann::json::array(); }),
                        "dim_mult must be a non-empty list");

  nlohmann::json without_optional = valid;
  without_optional.erase("input_channels");
  without_optional.erase("attn_scales");
  EXPECT_EQ(AutoencoderKLQwenImageConfig::from_json(without_optional, "vae/config.json").input_channels, 3);
}

TEST(VaeTest, ParameterShapesListTheCheckpointAndWhatLoads) {
  std::map<std::string, Shape> declared;
  for (const auto& [name, shape] : AutoencoderKLQwenImage::parameter_shapes(tiny_vae().config))
    declared[name] = shape;
  std::map<std::string, Shape> stored;
  SafetensorsFile file = SafetensorsFile::open(tiny_vae_dir() / "diffusion_pytorch_model.safetensors");
  for (const SafetensorsTensorInfo& info : file.tensors()) stored[info.name] = info.shape;
  EXPECT_EQ(declared, stored);

  // The model keeps each causal conv's last temporal tap, views every norm gain as [C, 1, 1] and never
  // reads time_conv.
  std::map<std::string, Shape> expected_visit;
  for (auto [name, shape] : declared) {
    if (name.find(".time_conv.") != std::string::npos) continue;
    if (shape.size() == 5) shape.erase(shape.begin() + 2);
    if (name.ends_with(".gamma")) shape = {shape[0], 1, 1};
    expected_visit[name] = shape;
  }
  std::map<std::string, Shape> visited;
  tiny_vae().vae->visit([&](const std::string& name, Tensor& tensor) { visited[name] = tensor.shape(); });
  EXPECT_EQ(visited, expected_visit);
}

TEST(VaeTest, FullSizeConfigHas127MillionParameters) {
  AutoencoderKLQwenImageConfig config = tiny_vae().config;
  config.base_dim = 96;
  int64_t parameters = 0;
  for (const auto& [name, shape] : AutoencoderKLQwenImage::parameter_shapes(config))
    parameters += shape_numel(shape);
  EXPECT_EQ(parameters, 126892531);
}

}  // namespace
}  // namespace canvas
