// How an edit job sizes its output and pictures (QwenImageEditPlusPipeline / QwenImageEditPipeline), and
// the requests it refuses before loading any weight. The whole pipeline's parity is in edit_pipeline_test.
#include <gtest/gtest.h>

#include "pipeline/job_geometry.h"
#include "test_util.h"

namespace canvas {
namespace {

// The tiny text-to-image model's configs, described as an edit model with the published processor.
QwenImageConfigs edit_configs(QwenImagePipelineKind kind) {
  QwenImageConfigs configs = read_qwen_image_configs(test::source_path("models/tiny-qwen-image"));
  configs.kind = kind;
  configs.vision_language = Qwen2_5_VLConfig::from_file(configs.layout.component("text_encoder").config_file);
  Qwen2VLImageProcessorConfig processor;
  processor.min_pixels = 3136;
  processor.max_pixels = 12845056;
  configs.image_processor = processor;
  return configs;
}

RgbImage picture(int64_t width, int64_t height) {
  return {width, height, std::vector<uint8_t>(static_cast<size_t>(width * height * 3), 128), {}};
}

// Values from the reference's calculate_dimensions (Python: round() ties to even).
TEST(EditGeometry, CalculateDimensionsMatchesTheReference) {
  struct Case {
    int64_t area, width, height, expected_width, expected_height;
  };
  for (const Case& c : {Case{384 * 384, 150, 100, 480, 320}, Case{1024 * 1024, 150, 100, 1248, 832},
                        Case{1024 * 1024, 1000, 1000, 1024, 1024}, Case{384 * 384, 90, 120, 320, 448},
                        Case{1024 * 1024, 1920, 1080, 1376, 768}, Case{384 * 384, 3000, 100, 2112, 64}}) {
    const PixelSize size =
        calculate_dimensions(c.area, static_cast<double>(c.width) / static_cast<double>(c.height));
    EXPECT_EQ(size.width, c.expected_width) << c.width << "x" << c.height << " at " << c.area;
    EXPECT_EQ(size.height, c.expected_height) << c.width << "x" << c.height << " at " << c.area;
  }
}

TEST(EditGeometry, EditPlusSizesEachPictureAndTheOutputFromTheLast) {
  const QwenImageConfigs configs = edit_configs(QwenImagePipelineKind::EditPlus);
  ImageEditRequest request;
  request.images = {picture(150, 100), picture(1920, 1080)};
  const JobGeometry geometry = job_geometry(configs, request);
  ASSERT_EQ(geometry.references.size(), 2u);
  EXPECT_EQ(geometry.references[0].condition.width, 480);
  EXPECT_EQ(geometry.references[0].condition.height, 320);
  EXPECT_EQ(geometry.references[0].vae.width, 1248);
  EXPECT_EQ(geometry.references[0].vae.height, 832);
  // smart_resize(320, 480) with factor 28: 308 x 476 -> a 22 x 34 patch grid.
  EXPECT_EQ(geometry.references[0].grid_thw, (std::array<int64_t, 3>{1, 22, 34}));
  // The output follows the last picture at 1024^2.
  EXPECT_EQ(geometry.width, 1376);
  EXPECT_EQ(geometry.height, 768);
  ASSERT_EQ(geometry.img_shapes.size(), 3u);
  EXPECT_EQ(geometry.img_shapes[1].height, 832 / 16);
  EXPECT_EQ(geometry.img_shapes[1].width, 1248 / 16);
  EXPECT_EQ(geometry.sequence_image_tokens(), geometry.image_tokens() + 52 * 78 + 48 * 86);
  // Unguided without a negative prompt, whatever the scale, as the reference.
  EXPECT_FALSE(geometry.guided);
  request.sampling.negative_prompt = "blurry";
  EXPECT_TRUE(job_geometry(configs, request).guided);
  request.sampling.cfg_scale = 1.0f;
  EXPECT_FALSE(job_geometry(configs, request).guided);
}

TEST(EditGeometry, GivenSizesAreFlooredToWholePatches) {
  const QwenImageConfigs configs = edit_configs(QwenImagePipelineKind::EditPlus);
  ImageEditRequest request;
  request.images = {picture(64, 64)};
  request.width = 1000;
  request.height = 519;
  const JobGeometry geometry = job_geometry(configs, request);
  EXPECT_EQ(geometry.width, 992);
  EXPECT_EQ(geometry.height, 512);
}

TEST(EditGeometry, TheOlderPipelineSizesItsPictureToTheOutputArea) {
  const QwenImageConfigs configs = edit_configs(QwenImagePipelineKind::Edit);
  ImageEditRequest request;
  request.images = {picture(150, 100)};
  const JobGeometry geometry = job_geometry(configs, request);
  EXPECT_EQ(geometry.references[0].condition.width, 1248);
  EXPECT_EQ(geometry.references[0].vae.width, 1248);
  EXPECT_EQ(geometry.width, 1248);
  EXPECT_EQ(geometry.height, 832);
  request.images.push_back(picture(10, 10));
  test::expect_contains(test::error_of([&] { job_geometry(configs, request); }), "edits one picture");
}

TEST(EditGeometry, RefusesWhatCannotBeSized) {
  const QwenImageConfigs text_to_image = read_qwen_image_configs(test::source_path("models/tiny-qwen-image"));
  ImageEditRequest request;
  request.images = {picture(64, 64)};
  test::expect_contains(test::error_of([&] { job_geometry(text_to_image, request); }),
                        "editing needs Qwen-Image-Edit");
  const QwenImageConfigs configs = edit_configs(QwenImagePipelineKind::EditPlus);
  request.images.clear();
  test::expect_contains(test::error_of([&] { job_geometry(configs, request); }), "at least one picture");
  request.images.assign(kMaxEditImages + 1, picture(64, 64));
  test::expect_contains(test::error_of([&] { job_geometry(configs, request); }), "at most 8 pictures");
  // 1x1000 at 1024^2 would be 32 x 32384 pixels.
  request.images = {picture(1, 1000)};
  test::expect_contains(test::error_of([&] { job_geometry(configs, request); }), "too narrow");
  request.images = {picture(64, 64)};
  request.width = 5000;
  test::expect_contains(test::error_of([&] { validate_request(request, configs); }), "width and height");
  request.width = 8;
  test::expect_contains(test::error_of([&] { job_geometry(configs, request); }), "output size");
}

}  // namespace
}  // namespace canvas
