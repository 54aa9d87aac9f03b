// Qwen-Image-Edit prompt encoding with pictures (pipeline/edit_prompt_encoder.h) against diffusers'
// QwenImageEdit(Plus)Pipeline.encode_prompt on the tiny model, with the real tokenizer
// (tests/golden/vision/edit_prompt/, tools/reference/make_vision_goldens.py).
#include "pipeline/edit_prompt_encoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "io/model_layout.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "test_util.h"

namespace canvas {
namespace {

const std::string kFolder = "vision/edit_prompt";

class EditPromptEncoding : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const ModelLayout layout = resolve_model(test::source_path("models/tiny-qwen-image"));
    tokenizer_ = new Qwen2Tokenizer(Qwen2Tokenizer::from_folder(layout.component("tokenizer").folder));
    const ComponentLayout& text_encoder = layout.component("text_encoder");
    config_ = new Qwen2_5_VLConfig(Qwen2_5_VLConfig::from_file(text_encoder.config_file));
    const WeightSource weights = text_encoder.open_weights();
    text_model_ = new Qwen2_5_VLTextModel(config_->text_config, weights);
    tower_ = new Qwen2_5_VisionTransformerPretrainedModel(config_->vision_config, weights);
    golden_ = new WeightSource(test::open_golden(kFolder));
  }
  static void TearDownTestSuite() {
    delete golden_;
    delete tower_;
    delete text_model_;
    delete config_;
    delete tokenizer_;
  }

  // The pictures of a golden set through this processor and vision tower, as the edit pipeline encodes them
  // once for the prompt and the negative prompt.
  static Qwen2_5_VLImageEmbeds encode_pictures(const std::string& set) {
    std::vector<RgbImage> pictures;
    for (int i = 0; golden_->contains("pictures." + set + "." + std::to_string(i)); ++i)
      pictures.push_back(test::golden_picture(*golden_, "pictures." + set + "." + std::to_string(i)));
    if (pictures.empty()) return {};
    const auto processor_config = Qwen2VLImageProcessorConfig::from_file(
        test::source_path("tests/golden/" + kFolder) / "preprocessor_config.json");
    const Qwen2VLImageFeatures features = preprocess_images(pictures, processor_config);
    return {tower_->forward(features.pixel_values, features.image_grid_thw), features.image_grid_thw};
  }

  static Qwen2Tokenizer* tokenizer_;
  static Qwen2_5_VLConfig* config_;
  static Qwen2_5_VLTextModel* text_model_;
  static Qwen2_5_VisionTransformerPretrainedModel* tower_;
  static WeightSource* golden_;
};

Qwen2Tokenizer* EditPromptEncoding::tokenizer_ = nullptr;
Qwen2_5_VLConfig* EditPromptEncoding::config_ = nullptr;
Qwen2_5_VLTextModel* EditPromptEncoding::text_model_ = nullptr;
Qwen2_5_VisionTransformerPretrainedModel* EditPromptEncoding::tower_ = nullptr;
WeightSource* EditPromptEncoding::golden_ = nullptr;

TEST_F(EditPromptEncoding, MatchesTheEditPipelinesWithTheirPictures) {
  const nlohmann::json cases = test::golden_json(kFolder).at("cases");
  ASSERT_EQ(cases.size(), 4u);
  std::map<std::string, Qwen2_5_VLImageEmbeds> pictures;
  for (const nlohmann::json& entry : cases) {
    const std::string name = entry.at("name");
    SCOPED_TRACE(name);
    const EditPromptTemplate prompt_template = entry.at("pipeline") == "QwenImageEditPlusPipeline"
                                                   ? EditPromptTemplate::EditPlus
                                                   : EditPromptTemplate::Edit;
    const QwenImageEditPromptEncoder encoder(prompt_template, *tokenizer_, *text_model_, *config_);
    const std::string set = entry.at("pictures");
    if (!pictures.contains(set)) pictures[set] = encode_pictures(set);
    const Qwen2_5_VLImageEmbeds& images = pictures[set];
    if (golden_->contains(name + ".image_grid_thw")) {
      EXPECT_EQ(images.grid_thw, test::golden_grids(golden_->get(name + ".image_grid_thw")));
    }

    const PromptEmbedding result = encoder.encode(entry.at("prompt"), images);
    // The ids are Qwen2VLProcessor's input_ids: template, pictures' placeholders expanded.
    const Tensor expected_ids = golden_->get(name + ".input_ids");
    const int64_t* id_values = expected_ids.data<int64_t>();
    EXPECT_EQ(result.template_token_ids, std::vector<int32_t>(id_values, id_values + expected_ids.numel()));
    const Tensor expected = golden_->get(name + ".prompt_embeds");
    ASSERT_EQ(result.embeds.shape(), expected.shape());
    EXPECT_EQ(result.mask.shape(), (Shape{1, expected.dim(1)}));
    EXPECT_EQ(result.truncated_tokens, 0);
    const double error = test::max_relative_error(result.embeds, expected);
    std::printf("[ parity ] edit_prompt %s prompt_embeds max relative error %.3g\n", name.c_str(), error);
    EXPECT_LE(error, 1e-5);
  }
}

TEST_F(EditPromptEncoding, TemplateIdsAreTheProcessors) {
  // The real tokenizer and the grids alone: EditPlus with two pictures gives Qwen2VLProcessor's input_ids.
  const nlohmann::json cases = test::golden_json(kFolder).at("cases");
  for (const std::string name : {"plus_two_pictures", "plus_two_pictures_blank", "edit_one_picture"}) {
    SCOPED_TRACE(name);
    const auto entry = *std::find_if(cases.begin(), cases.end(), [&](const nlohmann::json& candidate) {
      return candidate.at("name") == name;
    });
    const QwenImageEditPromptEncoder encoder(entry.at("pipeline") == "QwenImageEditPlusPipeline"
                                                 ? EditPromptTemplate::EditPlus
                                                 : EditPromptTemplate::Edit,
                                             *tokenizer_, *text_model_, *config_);
    const Tensor expected = golden_->get(name + ".input_ids");
    const int64_t* id_values = expected.data<int64_t>();
    EXPECT_EQ(encoder.template_token_ids(entry.at("prompt"),
                                         test::golden_grids(golden_->get(name + ".image_grid_thw"))),
              std::vector<int32_t>(id_values, id_values + expected.numel()));
  }
}

TEST_F(EditPromptEncoding, RefusesMorePicturesThanTheTemplateHolds) {
  const QwenImageEditPromptEncoder edit(EditPromptTemplate::Edit, *tokenizer_, *text_model_, *config_);
  test::expect_contains(test::error_of([&] {
                          edit.template_token_ids("x", {{1, 4, 4}, {1, 4, 4}});
                        }),
                        "the Qwen-Image-Edit prompt template holds one picture, got 2");
  // A placeholder typed into the prompt is one image token too many for the pictures given.
  const QwenImageEditPromptEncoder plus(EditPromptTemplate::EditPlus, *tokenizer_, *text_model_, *config_);
  test::expect_contains(test::error_of([&] {
                          plus.template_token_ids("<|image_pad|>", {{1, 4, 4}});
                        }),
                        "the text holds 2 image tokens (<|image_pad|>) for 1 pictures");
}

TEST_F(EditPromptEncoding, RefusesATokenizerOfAnotherModel) {
  Qwen2_5_VLConfig other = *config_;
  other.image_token_id = 62;
  test::expect_contains(
      test::error_of([&] {
        QwenImageEditPromptEncoder(EditPromptTemplate::EditPlus, *tokenizer_, *text_model_, other);
      }),
      "the tokenizer's <|image_pad|> is id 151655 but the text encoder's image_token_id is 62");
}

}  // namespace
}  // namespace canvas
