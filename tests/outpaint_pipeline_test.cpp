// Outpainting a whole job on the tiny Qwen-Image model: the picture's pixels come back exactly, the new
// area is painted (not left as the edge fill), and the requests it cannot run are refused.
#include <gtest/gtest.h>

#include <memory>

#include "image/outpaint.h"
#include "pipeline/img2img.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

const QwenImageModel& tiny_model() {
  // Never destroyed: the allocators the weights return to may be gone by the time statics are.
  static const auto* model =
      new QwenImageModel(load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu()));
  return *model;
}

// 32x32 of diagonal stripes, so that every edge differs along its length.
RgbImage striped_picture() {
  RgbImage picture{32, 32, std::vector<uint8_t>(32 * 32 * 3), {}};
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 32; ++x)
      for (int64_t c = 0; c < 3; ++c)
        picture.pixels[static_cast<size_t>((y * 32 + x) * 3 + c)] =
            static_cast<uint8_t>((x * 7 + y * 5 + c * 60) % 256);
  return picture;
}

ImageToImageRequest outpaint_request() {
  ImageToImageRequest request;
  request.sampling.prompt = "a wide landscape";
  request.sampling.cfg_scale = 1.0f;
  request.sampling.steps = 2;
  request.sampling.seed = 5;
  request.strength = 1.0;
  request.image = striped_picture();
  request.outpaint = OutpaintMargins{16, 0, 16, 0};
  return request;
}

TEST(OutpaintPipeline, ThePictureComesBackExactlyAndTheNewAreaIsPainted) {
  const ImageToImageRequest request = outpaint_request();
  const JobResult result = image_to_image(tiny_model(), request, {});
  ASSERT_EQ(result.image.dim(0), 32);
  ASSERT_EQ(result.image.dim(1), 64);
  const std::vector<uint8_t> output = image_to_rgb8(result.image);
  const RgbImage edge_fill = extend_canvas(request.image, *request.outpaint);
  size_t repainted = 0;
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 64; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        const size_t at = static_cast<size_t>((y * 64 + x) * 3 + c);
        if (x >= 16 && x < 48) {
          ASSERT_EQ(output[at], request.image.pixels[static_cast<size_t>((y * 32 + x - 16) * 3 + c)])
              << "at " << x << "," << y;
        } else if (output[at] != edge_fill.pixels[at]) {
          ++repainted;
        }
      }
  EXPECT_GT(repainted, 32u * 32u * 3u / 2) << "the margins kept their edge fill";
}

TEST(OutpaintPipeline, RequestsItCannotRunAreRefused) {
  const QwenImageConfigs& configs = tiny_model().configs;
  ImageToImageRequest request = outpaint_request();
  request.outpaint = OutpaintMargins{};
  EXPECT_THROW(validate_request(request, configs), Error);
  request.outpaint = OutpaintMargins{-1, 0, 16, 0};
  EXPECT_THROW(validate_request(request, configs), Error);
  request.outpaint = OutpaintMargins{0, 0, kMaxImageSide, 0};
  EXPECT_THROW(validate_request(request, configs), Error);
  request = outpaint_request();
  request.mask = request.image;
  EXPECT_THROW(validate_request(request, configs), Error);
  request = outpaint_request();
  request.width = 64;
  EXPECT_THROW(validate_request(request, configs), Error);
  // Margins that leave the canvas off the multiple grow on the right and bottom.
  request = outpaint_request();
  request.outpaint = OutpaintMargins{8, 0, 0, 4};
  validate_request(request, configs);
  const ImageToImageRequest working = outpainted_request(request, configs);
  EXPECT_EQ(working.image.width, 48);
  EXPECT_EQ(working.image.height, 48);
  EXPECT_EQ(working.width, 48);
  EXPECT_TRUE(working.mask.has_value());
  EXPECT_FALSE(working.outpaint.has_value());
}

}  // namespace
}  // namespace canvas
