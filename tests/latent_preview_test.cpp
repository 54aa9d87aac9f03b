// Live previews: the pipeline's x0 estimate after each step (JobObservers::on_preview) and its projection to
// RGB with ComfyUI's Wan 2.1 factors.
#include "app/latent_preview.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "pipeline/latent_packing.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

using app::kPreviewLatentChannels;
using app::kWan21LatentRgbBias;
using app::kWan21LatentRgbFactors;
using app::latent_preview;

// A latent whose values differ in every channel and pixel, spanning about [-1.5, 1.5].
std::vector<float> hand_made_latent(int64_t height, int64_t width) {
  std::vector<float> values(static_cast<size_t>(kPreviewLatentChannels * height * width));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>(static_cast<int>(i * 37 % 61) - 30) / 20;
  return values;
}

TEST(LatentPreview, ProjectsEachPixelWithComfyUIsWan21Factors) {
  const int64_t height = 3, width = 5;  // not square, so rows and columns cannot be swapped unnoticed
  const std::vector<float> latent = hand_made_latent(height, width);
  const RgbImage image =
      latent_preview(Tensor::from_floats(latent, {1, kPreviewLatentChannels, height, width}));
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.pixels.size(), static_cast<size_t>(height * width * 3));
  EXPECT_TRUE(image.text.empty());
  int clamped = 0;
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      for (int rgb = 0; rgb < 3; ++rgb) {
        // ComfyUI: linear(x0, factors, bias), then ((v + 1) / 2).clamp(0, 1) * 255 cast to uint8.
        double value = kWan21LatentRgbBias[rgb];
        for (int channel = 0; channel < kPreviewLatentChannels; ++channel)
          value += static_cast<double>(latent[static_cast<size_t>((channel * height + y) * width + x)]) *
                   kWan21LatentRgbFactors[channel][rgb];
        const double scaled = std::clamp((value + 1.0) / 2.0, 0.0, 1.0) * 255.0;
        clamped += scaled == 0.0 || scaled == 255.0;
        // Computed in double here and in float there: the values must not sit on a byte's edge.
        if (scaled > 0.0 && scaled < 255.0) {
          ASSERT_GT(std::fabs(scaled - std::round(scaled)), 1e-3) << value;
        }
        EXPECT_EQ(image.pixels[static_cast<size_t>((y * width + x) * 3 + rgb)],
                  static_cast<int>(std::floor(scaled)))
            << "pixel (" << x << ", " << y << ") channel " << rgb;
      }
    }
  }
  EXPECT_LT(clamped, height * width);  // the test data mostly stays inside the range
}

TEST(LatentPreview, ClampsOutOfRangeValuesAndNaN) {
  // Channel 14 adds (0.3477, 0.2275, 0.2950) per unit: +100 saturates every colour, -100 blacks it out.
  std::vector<float> latent(static_cast<size_t>(kPreviewLatentChannels * 3), 0.0f);
  latent[14 * 3 + 0] = 100.0f;
  latent[14 * 3 + 1] = -100.0f;
  for (int channel = 0; channel < kPreviewLatentChannels; ++channel)
    latent[static_cast<size_t>(channel * 3 + 2)] = std::numeric_limits<float>::quiet_NaN();
  const RgbImage image = latent_preview(Tensor::from_floats(latent, {1, kPreviewLatentChannels, 1, 3}));
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 0, 0, 0}));
}

TEST(LatentPreview, ZeroLatentsShowTheBias) {
  const RgbImage image = latent_preview(Tensor::zeros({1, kPreviewLatentChannels, 2, 2}, DType::F32));
  for (int rgb = 0; rgb < 3; ++rgb) {
    const double scaled = (kWan21LatentRgbBias[rgb] + 1.0) / 2.0 * 255.0;
    EXPECT_EQ(image.pixels[static_cast<size_t>(rgb)], static_cast<int>(scaled));
  }
}

TEST(LatentPreview, RejectsOtherShapes) {
  EXPECT_NE(test::error_of([] {
              latent_preview(Tensor::zeros({1, 4, 2, 2}, DType::F32));
            }).find("[1, 16, h, w] latents"),
            std::string::npos);
  EXPECT_THROW(latent_preview(Tensor::zeros({16, 2, 2}, DType::F32)), Error);
  EXPECT_THROW(latent_preview(Tensor::zeros({2, 16, 2, 2}, DType::F32)), Error);
}

// Whole jobs of the tiny model with a preview listener.
class LatentPreviewPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new QwenImageModel(load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu()));
  }
  static void TearDownTestSuite() { delete model_; }

  static TextToImageRequest request() {
    TextToImageRequest request;
    request.sampling.prompt = "a red fox";
    request.sampling.cfg_scale = 4.0f;  // guided: the estimate uses the guided prediction
    request.sampling.steps = 3;
    request.sampling.seed = 11;
    request.width = 64;
    request.height = 48;
    return request;
  }

  static QwenImageModel* model_;
};

QwenImageModel* LatentPreviewPipeline::model_ = nullptr;

TEST_F(LatentPreviewPipeline, EveryStepHandsItsEstimateAndTheJobIsUnchanged) {
  const TextToImageRequest job = request();
  const int64_t latent_height = job.height / 8, latent_width = job.width / 8;
  std::vector<Tensor> estimates;
  int steps_seen = 0;
  JobObservers observers;
  observers.on_step = [&](int done, int) { steps_seen = done; };
  observers.on_preview = [&](int done, int total, const Tensor& denoised) {
    EXPECT_EQ(done, static_cast<int>(estimates.size()) + 1);
    EXPECT_EQ(total, job.sampling.steps);
    EXPECT_EQ(steps_seen, done);  // after the step's own callback
    estimates.push_back(denoised);
  };
  const JobResult previewed = text_to_image(*model_, job, {}, observers);
  const JobResult plain = text_to_image(*model_, job, {});

  ASSERT_EQ(estimates.size(), static_cast<size_t>(job.sampling.steps));
  for (const Tensor& estimate : estimates) {
    EXPECT_EQ(estimate.shape(), (Shape{1, kPreviewLatentChannels, latent_height, latent_width}));
    EXPECT_EQ(estimate.dtype(), DType::F32);
    EXPECT_TRUE(estimate.device().is_cpu());
  }
  // The last step's next sigma is 0, so its Euler step lands on x0 = x_t - sigma_t * v: the estimate is the
  // final latents, formed by the same f32 operations (bit-identical by construction).
  const Tensor final_latents = unpack_latents(previewed.latents, latent_height, latent_width);
  EXPECT_TRUE(test::bit_identical(estimates.back(), final_latents));
  // Earlier estimates are the model's guesses on the way there.
  EXPECT_FALSE(test::bit_identical(estimates.front(), final_latents));
  // Watching changes nothing.
  EXPECT_TRUE(test::bit_identical(previewed.latents, plain.latents));
  EXPECT_TRUE(test::bit_identical(previewed.image, plain.image));

  const RgbImage preview = latent_preview(estimates.back());
  EXPECT_EQ(preview.width, latent_width);
  EXPECT_EQ(preview.height, latent_height);
}

TEST_F(LatentPreviewPipeline, AListenerThatThrowsStopsTheJobWithItsError) {
  const TextToImageRequest job = request();
  const JobResult before = text_to_image(*model_, job, {});
  JobObservers observers;
  observers.on_preview = [](int done, int, const Tensor&) {
    if (done == 2) throw Error("the preview listener gave up");
  };
  EXPECT_EQ(test::error_of([&] { text_to_image(*model_, job, {}, observers); }),
            "the preview listener gave up");
  // The model is left as it was: the next job makes the same picture.
  const JobResult after = text_to_image(*model_, job, {});
  EXPECT_TRUE(test::bit_identical(after.latents, before.latents));
}

}  // namespace
}  // namespace canvas
