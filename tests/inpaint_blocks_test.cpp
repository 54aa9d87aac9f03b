// The building blocks of img2img and inpainting against diffusers and Pillow (tests/golden/inpaint/, written
// by tools/reference/make_inpaint_goldens.py): mask and picture processing, the strength cut, scale_noise,
// posterior sampling in the generator's order of draws, the mask on the latent grid and the blend.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "image/decode.h"
#include "image/mask.h"
#include "image/resample.h"
#include "image/vae_image_processor.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/image_latents.h"
#include "pipeline/latent_packing.h"
#include "pipeline/torch_generator.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using Json = nlohmann::json;
namespace vip = vae_image_processor;

const std::string kBlocks = "inpaint/blocks";

RgbImage read_png(const std::string& golden_folder, const std::string& file) {
  return read_image(test::source_path("tests/golden/" + golden_folder + "/" + file)).rgb;
}

// A golden U8 tensor [h, w, 3] as a picture.
RgbImage golden_picture(const WeightSource& golden, const std::string& name) {
  const Tensor tensor = golden.get(name);
  EXPECT_EQ(tensor.dtype(), DType::U8) << name;
  const auto* data = tensor.data<uint8_t>();
  return RgbImage{tensor.dim(1), tensor.dim(0), {data, data + tensor.numel()}, {}};
}

std::vector<uint8_t> golden_bytes(const WeightSource& golden, const std::string& name) {
  const Tensor tensor = golden.get(name);
  const auto* data = tensor.data<uint8_t>();
  return {data, data + tensor.numel()};
}

// How many bytes differ, and by how much at most ("identical" when none).
std::string compare_bytes(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& expected) {
  if (actual.size() != expected.size())
    return std::to_string(actual.size()) + " bytes vs " + std::to_string(expected.size());
  int64_t differing = 0;
  int largest = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const int difference = std::abs(int{actual[i]} - int{expected[i]});
    differing += difference != 0;
    largest = std::max(largest, difference);
  }
  if (differing == 0) return "identical";
  return std::to_string(differing) + " of " + std::to_string(actual.size()) + " bytes differ, by up to " +
         std::to_string(largest);
}

void expect_same_picture(const RgbImage& actual, const RgbImage& expected) {
  ASSERT_EQ(actual.width, expected.width);
  ASSERT_EQ(actual.height, expected.height);
  EXPECT_EQ(compare_bytes(actual.pixels, expected.pixels), "identical");
}

std::optional<vip::CropRegion> crop_region(const Json& region) {
  if (region.is_null()) return std::nullopt;
  return vip::CropRegion{region[0], region[1], region[2], region[3]};
}

vip::ResizeMode resize_mode(const std::string& name) {
  if (name == "fill") return vip::ResizeMode::Fill;
  if (name == "crop") return vip::ResizeMode::Crop;
  return vip::ResizeMode::Default;
}

RgbImage blocks_mask(const std::string& name) {
  return read_png(kBlocks, name + ".png");
}

TEST(InpaintBlocks, GreyLevelsAreLuma24) {
  const WeightSource golden = test::open_golden(kBlocks);
  EXPECT_EQ(
      compare_bytes(to_grey(read_png(kBlocks, "picture.png")).pixels, golden_bytes(golden, "picture_grey")),
      "identical");
  for (const std::string name : {"mask_soft", "mask_corner", "mask_tall"}) {
    EXPECT_EQ(compare_bytes(to_grey(blocks_mask(name)).pixels, golden_bytes(golden, name + "_grey")),
              "identical")
        << name;
  }
  // Pillow's 16-bit fixed point rounds (1, 1, 0) up where R*299/1000 + G*587/1000 would give 0.
  EXPECT_EQ(to_grey(RgbImage{1, 1, {1, 1, 0}, {}}).pixels[0], 1);
}

TEST(InpaintBlocks, GaussianBlurMatchesPillow) {
  const WeightSource golden = test::open_golden(kBlocks);
  const RgbImage mask = blocks_mask("mask_soft");
  const RgbImage picture = read_png(kBlocks, "picture.png");
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& radius_json : manifest.at("blur_radii")) {
    const auto radius = radius_json.get<float>();
    std::string key = radius_json.dump();
    for (char& c : key) c = c == '.' ? 'p' : c;
    SCOPED_TRACE("radius " + key);
    expect_same_picture(gaussian_blur(mask, radius), golden_picture(golden, "blur_" + key + "_mask_soft"));
    if (golden.contains("blur_" + key + "_picture")) {
      expect_same_picture(gaussian_blur(picture, radius), golden_picture(golden, "blur_" + key + "_picture"));
    }
  }
  EXPECT_EQ(gaussian_blur(picture, 0.0f).pixels, picture.pixels);
  test::expect_contains(test::error_of([&] { gaussian_blur(picture, -1.0f); }), "blur radius");
}

TEST(InpaintBlocks, InvertAndMaskFromAlpha) {
  const WeightSource golden = test::open_golden(kBlocks);
  expect_same_picture(invert(blocks_mask("mask_soft")), golden_picture(golden, "invert_mask_soft"));

  DecodedImage transparent;
  transparent.rgb = RgbImage{2, 1, {10, 20, 30, 40, 50, 60}, {}};
  transparent.alpha = {0, 200};
  const RgbImage mask = mask_from_alpha(transparent);
  EXPECT_EQ(mask.pixels, (std::vector<uint8_t>{255, 255, 255, 55, 55, 55}));
  transparent.alpha.clear();
  test::expect_contains(test::error_of([&] { mask_from_alpha(transparent); }), "no alpha");
}

TEST(InpaintBlocks, CropRegionMatchesDiffusers) {
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& entry : manifest.at("crop_regions")) {
    SCOPED_TRACE(entry.dump());
    const vip::CropRegion region = vip::get_crop_region(blocks_mask(entry.at("mask")), entry.at("width"),
                                                        entry.at("height"), entry.at("pad"));
    EXPECT_EQ(region, *crop_region(entry.at("region")));
  }
  const RgbImage empty{8, 8, std::vector<uint8_t>(8 * 8 * 3, 0), {}};
  test::expect_contains(test::error_of([&] { vip::get_crop_region(empty, 16, 16, 2); }), "mask is empty");
}

TEST(InpaintBlocks, ResizeModesAndBoxesMatchPillow) {
  const WeightSource golden = test::open_golden(kBlocks);
  const Json& manifest = test::golden_json(kBlocks);
  const RgbImage picture = read_png(kBlocks, "picture.png");
  for (const Json& entry : manifest.at("resize_cases")) {
    SCOPED_TRACE(entry.dump());
    expect_same_picture(
        vip::resize(picture, entry.at("width"), entry.at("height"), resize_mode(entry.at("mode"))),
        golden_picture(golden, entry.at("expected")));
  }
  for (const Json& entry : manifest.at("box_cases")) {
    SCOPED_TRACE(entry.dump());
    const Json& box = entry.at("box");
    expect_same_picture(resize(picture, entry.at("width"), entry.at("height"), ResampleFilter::Lanczos,
                               ResampleBox{box[0], box[1], box[2], box[3]}),
                        golden_picture(golden, entry.at("expected")));
  }
  test::expect_contains(test::error_of([&] {
                          resize(picture, 4, 4, ResampleFilter::Lanczos, ResampleBox{0, 0, 71, 50});
                        }),
                        "inside the 70x50 picture");
}

TEST(InpaintBlocks, MaskAndImagePreprocessingMatchDiffusers) {
  const WeightSource golden = test::open_golden(kBlocks);
  const RgbImage picture = read_png(kBlocks, "picture.png");
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& entry : manifest.at("preprocess_cases")) {
    SCOPED_TRACE(entry.dump());
    const std::string expected = entry.at("expected");
    const auto region = crop_region(entry.at("crop"));
    const vip::ResizeMode mode = resize_mode(entry.at("resize_mode"));
    const Tensor mask = vip::preprocess_mask(blocks_mask(entry.at("mask")), entry.at("width"),
                                             entry.at("height"), mode, region);
    // The reference's 0/1 floats, stored as bytes.
    const Tensor expected_mask = golden.get(expected + "_mask");
    ASSERT_EQ(mask.shape(), expected_mask.shape());
    std::vector<uint8_t> mask_bytes;
    for (float value : mask.to_floats()) mask_bytes.push_back(static_cast<uint8_t>(value));
    EXPECT_EQ(compare_bytes(mask_bytes, golden_bytes(golden, expected + "_mask")), "identical");
    if (golden.contains(expected + "_image")) {
      const Tensor image = vip::preprocess(picture, entry.at("width"), entry.at("height"), mode, region);
      EXPECT_TRUE(test::bit_identical(image, golden.get(expected + "_image")));
    }
  }
}

TEST(InpaintBlocks, ApplyOverlayMatchesDiffusers) {
  const WeightSource golden = test::open_golden(kBlocks);
  const RgbImage picture = read_png(kBlocks, "picture.png");
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& entry : manifest.at("overlay_cases")) {
    SCOPED_TRACE(entry.dump());
    expect_same_picture(
        vip::apply_overlay(blocks_mask(entry.at("mask")), picture,
                           golden_picture(golden, entry.at("generated")), crop_region(entry.at("crop"))),
        golden_picture(golden, entry.at("expected")));
  }
}

TEST(InpaintBlocks, NearestInterpolationMatchesTorch) {
  const WeightSource golden = test::open_golden(kBlocks);
  const Tensor source = golden.get("interpolate_source");
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& size : manifest.at("interpolate_sizes")) {
    const std::string name = "interpolate_" + size[0].dump() + "x" + size[1].dump();
    SCOPED_TRACE(name);
    EXPECT_TRUE(test::bit_identical(interpolate_nearest(source, size[0], size[1]), golden.get(name)));
  }
}

FlowMatchSchedulerConfig tiny_scheduler_config() {
  return FlowMatchSchedulerConfig::from_file(
      test::source_path("models/tiny-qwen-image/scheduler/scheduler_config.json"));
}

TEST(InpaintBlocks, ScaleNoiseMatchesDiffusersBitForBit) {
  const WeightSource golden = test::open_golden(kBlocks);
  const Json& manifest = test::golden_json(kBlocks);
  FlowMatchEulerDiscreteScheduler scheduler(tiny_scheduler_config());
  scheduler.set_timesteps(manifest.at("scale_noise_steps"), manifest.at("scale_noise_mu").get<double>());
  test::expect_close(
      Tensor::from_floats(scheduler.sigmas(), {static_cast<int64_t>(scheduler.sigmas().size())}),
      golden.get("scale_noise_sigmas"), 1e-6);
  const Tensor sample = golden.get("scale_noise_sample");
  const Tensor noise = golden.get("scale_noise_noise");
  for (const Json& index : manifest.at("scale_noise_indices")) {
    SCOPED_TRACE("sigma index " + index.dump());
    EXPECT_TRUE(test::bit_identical(scheduler.scale_noise(sample, index, noise),
                                    golden.get("scale_noise_f32_" + index.dump())));
    EXPECT_TRUE(
        test::bit_identical(scheduler.scale_noise(sample.to(DType::BF16), index, noise.to(DType::BF16)),
                            golden.get("scale_noise_bf16_" + index.dump())));
  }
}

TEST(InpaintBlocks, StrengthCutMatchesGetTimesteps) {
  const Json manifest = test::golden_json(kBlocks);
  for (const Json& row : manifest.at("get_timesteps")) {
    SCOPED_TRACE(row.dump());
    const int steps = row[0];
    const double strength = row[1];
    if (row[2].is_null()) {
      test::expect_contains(
          test::error_of([&] { FlowMatchEulerDiscreteScheduler::first_step_for_strength(steps, strength); }),
          "leaves no step");
    } else {
      EXPECT_EQ(FlowMatchEulerDiscreteScheduler::first_step_for_strength(steps, strength), row[2].get<int>());
    }
  }
  test::expect_contains(
      test::error_of([] { FlowMatchEulerDiscreteScheduler::first_step_for_strength(10, 1.5); }),
      "strength must lie in [0, 1]");
}

// ---- pipeline cases: the blocks chained as the pipelines chain them ----

const char* const kCases[] = {"a_img2img",          "b_img2img_cfg",  "c_inpaint",
                              "d_inpaint_blur_cfg", "e_inpaint_crop", "f_edit_inpaint_cfg"};

struct TinyVae {
  AutoencoderKLQwenImageConfig config;
  WeightSource weights;
  AutoencoderKLQwenImage vae;
};

const AutoencoderKLQwenImage& tiny_vae() {
  static const TinyVae* loaded = [] {
    const auto dir = test::source_path("models/tiny-qwen-image/vae");
    auto config = AutoencoderKLQwenImageConfig::from_file(dir / "config.json");
    auto weights = WeightSource::open(dir / "diffusion_pytorch_model.safetensors");
    return new TinyVae{config, weights, AutoencoderKLQwenImage(config, weights)};
  }();
  return loaded->vae;
}

// [1, z, 1, h, w] (the reference's frame axis) -> [1, z, h, w].
Tensor drop_frame(const Tensor& x) {
  return x.view({x.dim(0), x.dim(1), x.dim(3), x.dim(4)});
}

class InpaintCase : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { manifest_ = test::golden_json(folder()); }
  std::string folder() const { return std::string("inpaint/") + GetParam(); }
  const Json& manifest() const { return manifest_; }
  WeightSource golden() const { return test::open_golden(folder()); }
  int64_t width() const { return manifest().at("width"); }
  int64_t height() const { return manifest().at("height"); }
  std::optional<vip::CropRegion> region() const { return crop_region(manifest().at("crop_region")); }
  vip::ResizeMode mode() const { return resize_mode(manifest().at("resize_mode")); }
  RgbImage picture() const {
    const RgbImage image = read_png(folder(), "image.png");
    // Edit-inpaint resizes the picture to the working size first; the processor's resize is then a copy.
    if (manifest().at("pipeline_class") != "QwenImageEditInpaintPipeline") return image;
    return resize(image, width(), height(), ResampleFilter::Lanczos);
  }
  // The mask as the pipeline got it: blurred by the caller when the case says so.
  RgbImage mask() const {
    const RgbImage mask = read_png(folder(), "mask.png");
    const Json& blur = manifest().at("mask_blur");
    return blur.is_null() ? mask : gaussian_blur(mask, blur.get<float>());
  }
  bool inpaints() const { return !manifest().at("mask").is_null(); }

 private:
  Json manifest_;
};

TEST_P(InpaintCase, TimestepsAreTheScheduleCutByStrength) {
  FlowMatchSchedulerConfig config = tiny_scheduler_config();
  FlowMatchEulerDiscreteScheduler scheduler(config);
  const int steps = manifest().at("num_inference_steps");
  scheduler.set_timesteps(
      steps, FlowMatchEulerDiscreteScheduler::calculate_shift(manifest().at("image_seq_len"), config));
  const int start =
      FlowMatchEulerDiscreteScheduler::first_step_for_strength(steps, manifest().at("strength"));
  EXPECT_EQ(start, manifest().at("t_start").get<int>());
  const std::vector<float> kept(scheduler.timesteps().begin() + start, scheduler.timesteps().end());
  EXPECT_TRUE(test::bit_identical(Tensor::from_floats(kept, {static_cast<int64_t>(kept.size())}),
                                  golden().get("timesteps")));
}

TEST_P(InpaintCase, MaskOnThePixelAndLatentGrids) {
  if (!inpaints()) return;
  const WeightSource tensors = golden();
  const Tensor mask_condition = vip::preprocess_mask(mask(), width(), height(), mode(), region());
  EXPECT_TRUE(test::bit_identical(mask_condition, tensors.get("mask_condition")));
  EXPECT_TRUE(test::bit_identical(interpolate_nearest(mask_condition, height() / 8, width() / 8),
                                  tensors.get("mask_latents")));
  EXPECT_TRUE(test::bit_identical(pack_mask_latents(mask_condition, height() / 8, width() / 8, 16),
                                  tensors.get("mask")));
}

TEST_P(InpaintCase, PosteriorSampleThenNoiseInTheGeneratorsOrder) {
  const WeightSource tensors = golden();
  const AutoencoderKLQwenImage& vae = tiny_vae();
  // The VAE on the processed picture gives the reference's posterior.
  const QwenImageLatentDistribution posterior =
      vae.encode(vip::preprocess(picture(), width(), height(), mode(), region()));
  test::expect_close(posterior.mean, drop_frame(tensors.get("posterior_mean")), 5e-6);
  test::expect_close(posterior.logvar, drop_frame(tensors.get("posterior_logvar")), 5e-6);

  // The first draw samples the posterior (the golden one, so the sampling alone is measured)...
  TorchGenerator generator(manifest().at("seed").get<uint64_t>());
  const Tensor sample = sample_latent_distribution(
      {drop_frame(tensors.get("posterior_mean")), drop_frame(tensors.get("posterior_logvar"))}, generator);
  // exp may differ from torch's in the last bit.
  test::expect_close(sample, drop_frame(tensors.get("image_latents_sample")), 1e-6);
  // ...the second is the noise.
  const int64_t h = height() / 8, w = width() / 8;
  const Tensor noise = pack_latents(generator.randn({1, 16, h, w}));
  EXPECT_TRUE(test::bit_identical(noise, tensors.get("noise")));

  const Tensor normalized =
      vae.normalize_latents_by_inverse_std(drop_frame(tensors.get("image_latents_sample")));
  EXPECT_TRUE(test::bit_identical(normalized, drop_frame(tensors.get("image_latents_normalized"))));
  EXPECT_TRUE(test::bit_identical(pack_latents(normalized), tensors.get("image_latents")));
}

TEST_P(InpaintCase, ScaleNoiseStartsTheLoopAndTheBlendKeepsThePicture) {
  const WeightSource tensors = golden();
  FlowMatchSchedulerConfig config = tiny_scheduler_config();
  FlowMatchEulerDiscreteScheduler scheduler(config);
  const int steps = manifest().at("num_inference_steps");
  scheduler.set_timesteps(
      steps, FlowMatchEulerDiscreteScheduler::calculate_shift(manifest().at("image_seq_len"), config));
  const int start = manifest().at("t_start");
  const Tensor x0 = tensors.get("image_latents");
  const Tensor noise = tensors.get("noise");
  EXPECT_TRUE(test::bit_identical(scheduler.scale_noise(x0, start, noise), tensors.get("initial_latents")));
  if (!inpaints()) return;
  // After step i the pipeline sets latents = blend(mask, scale_noise(x0, i + 1, noise) or x0 after the last
  // step, denoised): where the mask is 0 that is the noised picture, where it is 1 the denoised latents, so
  // blending each stored step with its own target gives it back bit for bit.
  const Tensor mask = tensors.get("mask");
  const Tensor per_step = tensors.get("latents_per_step");
  for (int i = start; i < steps; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    const Tensor latents = per_step.select(0, i - start).contiguous();
    const Tensor target = i + 1 < steps ? scheduler.scale_noise(x0, i + 1, noise) : x0;
    EXPECT_TRUE(test::bit_identical(blend_masked_latents(mask, target, latents), latents));
  }
  const Tensor final_latents = tensors.get("latents");
  EXPECT_TRUE(test::bit_identical(blend_masked_latents(mask, x0, final_latents), final_latents));
}

TEST_P(InpaintCase, CropRegionAndOverlay) {
  if (manifest().at("crop_region").is_null()) return;  // only padding_mask_crop crops and pastes back
  const WeightSource tensors = golden();
  EXPECT_EQ(vip::get_crop_region(mask(), width(), height(), manifest().at("padding_mask_crop")), *region());
  EXPECT_TRUE(test::bit_identical(vip::preprocess(picture(), width(), height(), mode(), region()),
                                  tensors.get("init_image")));
  expect_same_picture(
      vip::apply_overlay(mask(), picture(), golden_picture(tensors, "image_generated"), region()),
      golden_picture(tensors, "image_overlaid"));
}

INSTANTIATE_TEST_SUITE_P(Goldens, InpaintCase, ::testing::ValuesIn(kCases));

}  // namespace
}  // namespace canvas
