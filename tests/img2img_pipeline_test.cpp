// Whole img2img, inpainting and edit-inpainting jobs on the tiny Qwen-Image models against diffusers'
// QwenImageImg2ImgPipeline, QwenImageInpaintPipeline and QwenImageEditInpaintPipeline
// (tests/golden/inpaint/, tools/reference/make_inpaint_goldens.py): the processed inputs, the source's
// latents and noise, the final latents and the image.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "pipeline/img2img.h"
#include "pipeline/qwen_image_phases.h"
#include "test_util.h"

namespace canvas {
namespace {

std::string folder_of(const std::string& name) {
  return "inpaint/" + name;
}

const QwenImageModel& model_for(const std::string& name) {
  // Never destroyed: the allocators the weights return to may be gone by the time statics are.
  static auto* models = new std::map<std::string, std::unique_ptr<QwenImageModel>>();
  const std::string path = test::golden_json(folder_of(name)).at("model").get<std::string>();
  std::unique_ptr<QwenImageModel>& model = (*models)[path];
  if (!model)
    model = std::make_unique<QwenImageModel>(load_qwen_image(test::source_path(path), Device::cpu()));
  return *model;
}

// Largest |difference| of two images in 1/255 steps.
double largest_difference(const std::vector<float>& ours, const std::vector<float>& reference) {
  double largest = 0;
  for (size_t i = 0; i < ours.size(); ++i)
    largest = std::max(largest, std::fabs(static_cast<double>(ours[i]) - reference[i]) * 255.0);
  return largest;
}

class Img2ImgPipelineGolden : public ::testing::TestWithParam<std::string> {};

// Sizes, processed inputs, the source's sampled latents and the noise, from the reference's own inputs.
TEST_P(Img2ImgPipelineGolden, InputsAndSourceLatentsMatchDiffusers) {
  const std::string name = GetParam();
  const nlohmann::json parameters = test::golden_json(folder_of(name));
  const WeightSource golden = test::open_golden(folder_of(name));
  const QwenImageModel& model = model_for(name);
  const ImageToImageRequest request = test::golden_image_to_image_request(name);
  const JobGeometry geometry = job_geometry(model.configs, request);
  EXPECT_EQ(geometry.width, parameters.at("width").get<int64_t>());
  EXPECT_EQ(geometry.height, parameters.at("height").get<int64_t>());
  EXPECT_EQ(geometry.first_step, parameters.at("t_start").get<int>());
  EXPECT_EQ(geometry.guided, parameters.at("do_true_cfg").get<bool>());

  const ProcessedPictures processed = process_pictures(request, geometry);
  if (golden.contains("init_image")) {
    EXPECT_TRUE(test::bit_identical(processed.picture_tensor, golden.get("init_image")));
  }
  if (golden.contains("mask")) {
    EXPECT_TRUE(test::bit_identical(processed.packed_mask, golden.get("mask")));
  }
  if (golden.contains("condition_image")) {
    const RgbImage expected = test::golden_picture(golden, "condition_image");
    EXPECT_EQ(processed.picture.pixels, expected.pixels);
  }
  if (processed.crop_region) {
    const std::vector<int64_t> region = parameters.at("crop_region").get<std::vector<int64_t>>();
    EXPECT_EQ(*processed.crop_region,
              (vae_image_processor::CropRegion{region[0], region[1], region[2], region[3]}));
  }

  Job job(model, geometry, request.sampling.prompt, {}, {}, {});
  SourceLatents source;
  job.run({
      {JobPhase::Plan, [&] { job.arrange_weights(); }},
      {JobPhase::VaeEncode,
       [&] { source = encode_source_latents(job, processed.picture_tensor, request.sampling.seed); }},
  });
  test::expect_close(source.image_latents, golden.get("image_latents"), 1e-5);
  EXPECT_TRUE(test::bit_identical(source.noise, golden.get("noise")));
}

TEST_P(Img2ImgPipelineGolden, LatentsAndImageMatchDiffusers) {
  const std::string name = GetParam();
  const WeightSource golden = test::open_golden(folder_of(name));
  const QwenImageModel& model = model_for(name);
  ImageToImageRequest request = test::golden_image_to_image_request(name);
  const bool edits = model.configs.edits();
  std::vector<int> steps_seen;
  JobObservers observers;
  observers.on_step = [&](int done, int total) { steps_seen.push_back(done * 100 + total); };

  const JobResult result = image_to_image(model, request, {}, observers);
  const int kept = static_cast<int>(golden.get("timesteps").numel());
  ASSERT_EQ(static_cast<int>(steps_seen.size()), kept);
  EXPECT_EQ(steps_seen.back(), kept * 100 + kept);
  double error = 0, mrope_error = 0;
  JobResult compared = result;
  if (edits) {
    // The 3D text positions by default; the pinned reference's sequential ones give its latents and image.
    mrope_error = test::relative_error(result.latents, golden.get("latents_mrope"));
    EXPECT_LE(mrope_error, 1e-4);
    request.text_positions = TextPositions::Sequential;
    compared = image_to_image(model, request, {});
  }
  error = test::relative_error(compared.latents, golden.get("latents"));
  EXPECT_LE(error, 1e-4);

  double largest = 0;
  if (golden.contains("image_overlaid")) {
    const RgbImage expected = test::golden_picture(golden, "image_overlaid");
    ASSERT_EQ(compared.image.dim(0), expected.height);
    ASSERT_EQ(compared.image.dim(1), expected.width);
    std::vector<float> reference(expected.pixels.size());
    for (size_t i = 0; i < reference.size(); ++i) reference[i] = expected.pixels[i] / 255.0f;
    largest = largest_difference(compared.image.to_floats(), reference);
  } else {
    const Tensor expected = golden.get("image");
    ASSERT_EQ(compared.image.shape(), expected.shape());
    largest = largest_difference(compared.image.to_floats(), expected.to_floats());
  }
  EXPECT_LE(largest, 2.0);
  std::printf("[ parity ] %s latents rel %.3g", name.c_str(), error);
  if (edits) std::printf(" (sequential positions), %.3g (3D positions)", mrope_error);
  std::printf(", image max |d| %.3g/255\n", largest);
}

INSTANTIATE_TEST_SUITE_P(Cases, Img2ImgPipelineGolden,
                         ::testing::Values("a_img2img", "b_img2img_cfg", "c_inpaint", "d_inpaint_blur_cfg",
                                           "e_inpaint_crop", "f_edit_inpaint_cfg"));

}  // namespace
}  // namespace canvas
