// Whole text-to-image runs on the tiny model against diffusers' QwenImagePipeline on the CPU in float32:
// with and without true CFG, square and non-square.
#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

class PipelineGolden : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    model_ = new QwenImageModel(load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu()));
  }
  static void TearDownTestSuite() { delete model_; }
  static QwenImageModel* model_;
};

QwenImageModel* PipelineGolden::model_ = nullptr;

TEST_P(PipelineGolden, ImageMatchesDiffusers) {
  const std::string folder = "pipeline/" + GetParam();
  nlohmann::json parameters = test::golden_json(folder);
  WeightSource golden = test::open_golden(folder);
  TextToImageRequest request = test::golden_request(parameters);
  int steps_reported = 0;
  JobObservers observers;
  observers.on_step = [&](int done, int) { steps_reported = done; };
  JobResult result = text_to_image(*model_, request, {}, observers);

  EXPECT_EQ(steps_reported, request.sampling.steps);
  EXPECT_EQ(result.used_cfg, parameters.at("do_true_cfg").get<bool>());
  double latent_error = test::relative_error(result.latents, golden.get("latents"));
  EXPECT_LE(latent_error, 1e-4);

  Tensor expected = golden.get("image").select(0, 0).contiguous();
  ASSERT_EQ(result.image.shape(), expected.shape());
  std::vector<float> ours = result.image.to_floats(), reference = expected.to_floats();
  double max_difference = 0, sum_difference = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    double difference = std::fabs(static_cast<double>(ours[i]) - reference[i]);
    max_difference = std::max(max_difference, difference);
    sum_difference += difference;
  }
  double mean_difference = sum_difference / static_cast<double>(ours.size());
  EXPECT_LE(max_difference, 2.0 / 255.0);
  EXPECT_LE(mean_difference, 0.2 / 255.0);
  std::printf("[ parity ] %s latents rel %.3g, image max |d| %.3g/255, mean |d| %.3g/255\n", folder.c_str(),
              latent_error, max_difference * 255.0, mean_difference * 255.0);
}

INSTANTIATE_TEST_SUITE_P(Cases, PipelineGolden,
                         ::testing::Values("a_64x64_nocfg_seed42", "b_64x64_cfg4_space_seed7",
                                           "c_96x64_cfg4_neg_seed123"));

TEST_F(PipelineGolden, SameSeedSameImageDifferentSeedDifferentImage) {
  TextToImageRequest request;
  request.sampling.prompt = "a red fox";
  request.sampling.steps = 2;
  request.width = request.height = 32;
  request.sampling.seed = 5;
  std::vector<uint8_t> first = image_to_rgb8(text_to_image(*model_, request, {}).image);
  std::vector<uint8_t> again = image_to_rgb8(text_to_image(*model_, request, {}).image);
  request.sampling.seed = 6;
  std::vector<uint8_t> other = image_to_rgb8(text_to_image(*model_, request, {}).image);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other);
}

TEST_F(PipelineGolden, BadRequestsAreClearErrors) {
  TextToImageRequest request;
  request.sampling.prompt = "x";
  request.sampling.steps = 2;
  request.width = 100;  // not a multiple of 16
  request.height = 64;
  try {
    validate_request(request, model_->configs);
    FAIL() << "a width of 100 must be rejected";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("multiples of 16"), std::string::npos) << error.what();
  }
  request.width = 64;
  request.sampling.steps = 0;
  EXPECT_THROW(validate_request(request, model_->configs), Error);
  request.sampling.steps = 2;
  request.width = 1 << 20;
  EXPECT_THROW(validate_request(request, model_->configs), Error);
  request.width = 64;
  request.sampling.cfg_scale = NAN;
  EXPECT_THROW(validate_request(request, model_->configs), Error);
  // The scheduler's shift_terminal needs two steps: said before any weight is read.
  request.sampling.cfg_scale = 4.0f;
  request.sampling.steps = 1;
  EXPECT_NE(test::error_of([&] { validate_request(request, model_->configs); }).find("between 2 and 1000"),
            std::string::npos);
}

TEST_F(PipelineGolden, NonFiniteWeightsFailNamingTheStep) {
  // One NaN in a transformer weight: the job stops after the first step instead of writing a black image.
  QwenImageModel poisoned = *model_;
  QwenImageTransformer2DModel transformer = *model_->transformer;
  bool replaced = false;
  transformer.visit([&](const std::string& name, Tensor& weight) {
    if (replaced || !name.ends_with("proj_out.weight")) return;
    std::vector<float> values = weight.to_floats();
    values[0] = NAN;
    weight = Tensor::from_floats(values, weight.shape()).to(weight.dtype());
    replaced = true;
  });
  ASSERT_TRUE(replaced);
  poisoned.transformer = std::make_shared<const QwenImageTransformer2DModel>(transformer);
  TextToImageRequest request = test::golden_request(test::golden_json("pipeline/a_64x64_nocfg_seed42"));
  const std::string message = test::error_of([&] { text_to_image(poisoned, request, {}); });
  EXPECT_NE(message.find("after denoising step 1 holds NaN or Inf"), std::string::npos) << message;
}

}  // namespace
}  // namespace canvas
