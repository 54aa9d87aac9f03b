// Text with pictures through Qwen2.5-VL (models/qwen2_5_vl_model.h) against transformers' Qwen2_5_VLModel:
// the processor's expansion of <|image_pad|>, get_rope_index's 3D positions and the final hidden state with
// the pictures scattered in (tests/golden/vision/text_with_images/, tools/reference/make_vision_goldens.py).
#include <gtest/gtest.h>

#include "io/json_config.h"
#include "models/qwen2_5_vl_model.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

const std::string kFolder = "vision/text_with_images";

std::vector<int32_t> ids_of(const Tensor& golden_ids) {
  const int64_t* values = golden_ids.data<int64_t>();
  return std::vector<int32_t>(values, values + golden_ids.numel());
}

class TextWithImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::filesystem::path dir = test::source_path("tests/golden/" + kFolder);
    config_ = new Qwen2_5_VLConfig(Qwen2_5_VLConfig::from_file(dir / "config.json"));
    const WeightSource weights = test::open_golden_model(kFolder, /*text_encoder=*/true);
    text_model_ = new Qwen2_5_VLTextModel(config_->text_config, weights);
    tower_ = new Qwen2_5_VisionTransformerPretrainedModel(config_->vision_config, weights);
    golden_ = new WeightSource(test::open_golden(kFolder));
  }
  static void TearDownTestSuite() {
    delete golden_;
    delete tower_;
    delete text_model_;
    delete config_;
  }
  static Tensor golden(const std::string& name) { return golden_->get(name); }

  static Qwen2_5_VLConfig* config_;
  static Qwen2_5_VLTextModel* text_model_;
  static Qwen2_5_VisionTransformerPretrainedModel* tower_;
  static WeightSource* golden_;
};

Qwen2_5_VLConfig* TextWithImages::config_ = nullptr;
Qwen2_5_VLTextModel* TextWithImages::text_model_ = nullptr;
Qwen2_5_VisionTransformerPretrainedModel* TextWithImages::tower_ = nullptr;
WeightSource* TextWithImages::golden_ = nullptr;

class TextWithImagesCase : public TextWithImages, public ::testing::WithParamInterface<std::string> {
 protected:
  Tensor case_golden(const std::string& name) const { return golden(GetParam() + "." + name); }
};

TEST_P(TextWithImagesCase, ExpandsImageTokensAsTheProcessor) {
  const auto grids = test::golden_grids(case_golden("image_grid_thw"));
  EXPECT_EQ(expand_image_tokens(ids_of(case_golden("input_ids_unexpanded")), grids, *config_),
            ids_of(case_golden("input_ids")));
}

TEST_P(TextWithImagesCase, PositionsAreGetRopeIndexs) {
  const auto grids = test::golden_grids(case_golden("image_grid_thw"));
  EXPECT_TRUE(test::bit_identical(get_rope_index(ids_of(case_golden("input_ids")), grids, *config_),
                                  case_golden("position_ids")));
  const Tensor padded_mask = case_golden("padded_attention_mask");
  const int64_t* mask = padded_mask.data<int64_t>();
  EXPECT_TRUE(test::bit_identical(
      get_rope_index(ids_of(case_golden("padded_input_ids")), grids, *config_,
                     std::span<const int64_t>(mask, static_cast<size_t>(padded_mask.numel()))),
      case_golden("padded_position_ids")));
}

TEST_P(TextWithImagesCase, LastHiddenStateMatchesTransformers) {
  const std::vector<int32_t> ids = ids_of(case_golden("input_ids"));
  const auto grids = test::golden_grids(case_golden("image_grid_thw"));
  const Tensor expected = case_golden("last_hidden_state");

  // The text side alone, from the reference's image embeddings.
  const Tensor hidden =
      forward_text_with_images(*text_model_, *config_, ids, {case_golden("image_embeds"), grids});
  ASSERT_EQ(hidden.shape(), expected.shape());
  const double error = test::max_relative_error(hidden, expected);
  // Then the whole way from the pixels, through this vision tower.
  const Tensor embeds = tower_->forward(case_golden("pixel_values"), grids);
  const double tower_error = test::max_relative_error(embeds, case_golden("image_embeds"));
  const double full_error = test::max_relative_error(
      forward_text_with_images(*text_model_, *config_, ids, {embeds, grids}), expected);
  std::printf(
      "[ parity ] text_with_images %s last_hidden_state max relative error %.3g (from the pixels %.3g, "
      "image_embeds %.3g)\n",
      GetParam().c_str(), error, full_error, tower_error);
  EXPECT_LE(error, 1e-5);
  EXPECT_LE(full_error, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Cases, TextWithImagesCase,
                         ::testing::Values("a_one_picture", "b_three_pictures", "c_picture_at_start",
                                           "d_text_after_last_picture"));

TEST_F(TextWithImages, TextAloneKeepsSequentialPositionsAndItsOwnImageTokens) {
  // No pictures: the plain text forward, whose positions are 0..L-1 on every row.
  const std::vector<int32_t> ids = {5, 60, 62, 61, 7, 9};
  const int64_t length = static_cast<int64_t>(ids.size());
  const Tensor id_tensor = Tensor::from_ints(std::vector<int64_t>(ids.begin(), ids.end()), {1, length});
  const Tensor mask = Tensor::from_ints(std::vector<int64_t>(ids.size(), 1), {1, length});
  const Tensor text = text_model_->forward(id_tensor, mask);
  EXPECT_TRUE(test::bit_identical(forward_text_with_images(*text_model_, *config_, ids, {}), text));
  std::vector<int64_t> positions;
  for (int row = 0; row < 3; ++row) {
    for (int64_t i = 0; i < length; ++i) positions.push_back(i);
  }
  EXPECT_TRUE(
      test::bit_identical(text_model_->forward_embeds(text_model_->embed(id_tensor),
                                                      Tensor::from_ints(positions, {3, 1, length}), mask),
                          text));
}

TEST_F(TextWithImages, MismatchedImageTokensAreErrors) {
  const std::vector<std::array<int64_t, 3>> grid = {{1, 4, 6}};  // 6 image tokens
  const Tensor six_rows = Tensor::zeros({6, config_->text_config.hidden_size}, DType::F32);
  const int32_t image = config_->image_token_id;
  const std::vector<int32_t> five_tokens = {1, image, image, image, image, image, 2};
  test::expect_contains(test::error_of([&] {
                          forward_text_with_images(*text_model_, *config_, five_tokens, {six_rows, grid});
                        }),
                        "image 0 has 5 image tokens in the ids but its grid (1, 4, 6) needs 6");
  const Tensor embeds = text_model_->embed(Tensor::from_ints(std::vector<int64_t>(7, 1), {1, 7}));
  test::expect_contains(
      test::error_of([&] { scatter_image_embeds(embeds, five_tokens, six_rows, *config_); }),
      "the ids hold 5 image tokens, the vision tower gave 6 image embeddings");
  test::expect_contains(test::error_of([&] {
                          expand_image_tokens(std::vector<int32_t>{1, image, 2, image}, grid, *config_);
                        }),
                        "the text holds 2 image tokens (<|image_pad|>) for 1 pictures");
  const std::vector<int32_t> two_runs = {image, image, image, 1, image, image, image};
  test::expect_contains(test::error_of([&] {
                          get_rope_index(two_runs, {{1, 2, 6}}, *config_);
                        }),
                        "more runs of image tokens than the 1 image grids");
  test::expect_contains(test::error_of([&] {
                          get_rope_index(std::vector<int32_t>{1, 2}, grid, *config_);
                        }),
                        "1 image grids for 0 runs of image tokens");
}

TEST(Qwen2_5_VLConfig, ReadsTheSpecialTokensOfBothLayouts) {
  // transformers 5 (nested text_config) and the published flat layout both keep them at the top level.
  const auto nested =
      Qwen2_5_VLConfig::from_file(test::source_path("tests/golden/" + kFolder) / "config.json");
  EXPECT_EQ(nested.image_token_id, 62);
  EXPECT_EQ(nested.video_token_id, 63);
  EXPECT_EQ(nested.vision_start_token_id, 60);
  EXPECT_EQ(nested.vision_end_token_id, 61);
  EXPECT_EQ(nested.vision_config.spatial_merge_size, 2);
  EXPECT_EQ(nested.text_config.mrope_section, (std::vector<int64_t>{2, 3, 3}));
  const auto flat = Qwen2_5_VLConfig::from_file(
      test::source_path("tests/golden/vision/tower_b_legacy_names_h4") / "config.json");
  EXPECT_EQ(flat.image_token_id, 151655);
  EXPECT_EQ(flat.video_token_id, 151656);
  EXPECT_EQ(flat.vision_start_token_id, 151652);
  EXPECT_EQ(flat.vision_end_token_id, 151653);
  nlohmann::json without = read_json_file(test::source_path("tests/golden/" + kFolder) / "config.json");
  without.erase("vision_start_token_id");
  test::expect_contains(test::error_of([&] { Qwen2_5_VLConfig::from_json(without, "c.json"); }),
                        "vision_start_token_id");
}

}  // namespace
}  // namespace canvas
