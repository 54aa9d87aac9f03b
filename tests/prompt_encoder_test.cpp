// Qwen-Image prompt encoding (template, 34 dropped tokens, 512-token limit) against the pipeline's
// encode_prompt on the tiny model.
#include "pipeline/prompt_encoder.h"

#include <gtest/gtest.h>

#include "io/model_layout.h"
#include "test_util.h"

namespace canvas {
namespace {

class PromptEncoding : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    ModelLayout layout = resolve_model(test::source_path("models/tiny-qwen-image"));
    tokenizer_ = new Qwen2Tokenizer(Qwen2Tokenizer::from_folder(layout.component("tokenizer").folder));
    const ComponentLayout& text_encoder = layout.component("text_encoder");
    model_ = new Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig::from_file(text_encoder.config_file),
                                     text_encoder.open_weights());
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static Qwen2Tokenizer* tokenizer_;
  static Qwen2_5_VLTextModel* model_;
};

Qwen2Tokenizer* PromptEncoding::tokenizer_ = nullptr;
Qwen2_5_VLTextModel* PromptEncoding::model_ = nullptr;

TEST_P(PromptEncoding, MatchesEncodePrompt) {
  const std::string folder = "prompt_encoding/" + GetParam();
  nlohmann::json parameters = test::golden_json(folder);
  WeightSource golden = test::open_golden(folder);
  QwenImagePromptEncoder encoder(*tokenizer_, *model_);
  PromptEmbedding result = encoder.encode(parameters["prompt"].get<std::string>());

  // The template's ids, up to what the encoder needed (the reference tokenizes up to 1058).
  std::vector<float> expected_ids = golden.get("template_input_ids").to_floats();
  ASSERT_LE(result.template_token_ids.size(), expected_ids.size());
  for (size_t i = 0; i < result.template_token_ids.size(); ++i) {
    ASSERT_EQ(result.template_token_ids[i], static_cast<int32_t>(expected_ids[i])) << "token " << i;
  }
  Tensor expected = golden.get("prompt_embeds");
  ASSERT_EQ(result.embeds.shape(), expected.shape());
  double error = test::relative_error(result.embeds, expected);
  EXPECT_LE(error, 1e-4);
  std::printf("[ parity ] %s prompt_embeds relative error %.3g\n", folder.c_str(), error);
  EXPECT_EQ(result.mask.dim(1), expected.dim(1));
}

INSTANTIATE_TEST_SUITE_P(Prompts, PromptEncoding,
                         ::testing::Values("en_short", "zh", "space", "long_gt512", "long_gt1058"));

TEST_F(PromptEncoding, RejectsAbsurdSequenceLimits) {
  QwenImagePromptEncoder encoder(*tokenizer_, *model_);
  EXPECT_THROW(encoder.encode("a cat", 0), Error);
  EXPECT_THROW(encoder.encode("a cat", 5000), Error);
}

}  // namespace
}  // namespace canvas
