// The Qwen2-VL image processor and the Qwen2.5-VL vision tower against transformers
// (tests/golden/vision/, written by tools/reference/make_vision_goldens.py).
#include <gtest/gtest.h>

#include <algorithm>

#include "io/model_layout.h"
#include "models/qwen2_5_vl_vision.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using Json = nlohmann::json;

using test::golden_grids;
using test::golden_picture;

TEST(Qwen2VLImageProcessor, PixelValuesAndGridsMatchTransformers) {
  const WeightSource golden = test::open_golden("vision/processor");
  const Json cases = test::golden_json("vision/processor").at("cases");
  ASSERT_GE(cases.size(), 5u);
  for (const Json& entry : cases) {
    const std::string name = entry.at("name");
    SCOPED_TRACE(name);
    const auto config = Qwen2VLImageProcessorConfig::from_json(entry.at("preprocessor_config"), name);
    const Qwen2VLImageFeatures features =
        preprocess_images({golden_picture(golden, name + ".image")}, config);
    EXPECT_EQ(features.image_grid_thw, golden_grids(golden.get(name + ".image_grid_thw")));
    const Tensor expected = golden.get(name + ".pixel_values");
    ASSERT_EQ(features.pixel_values.shape(), expected.shape());
    const double error = test::max_relative_error(features.pixel_values, expected);
    std::printf("[ parity ] processor %s pixel_values max relative error %.3g\n", name.c_str(), error);
    EXPECT_LE(error, 1e-6);
  }
}

TEST(Qwen2VLImageProcessor, SmartResizeFollowsTheReference) {
  // round() ties to even: 70 / 28 = 2.5 -> 2.
  EXPECT_EQ(smart_resize(45, 70, 28, 56 * 56, 28 * 28 * 16).width, 56);
  const ResizedSize clamped_down = smart_resize(120, 200, 28, 56 * 56, 28 * 28 * 6);
  EXPECT_EQ(clamped_down.height, 28);
  EXPECT_EQ(clamped_down.width, 84);
  const ResizedSize clamped_up = smart_resize(20, 30, 28, 4000, 28 * 28 * 16);
  EXPECT_EQ(clamped_up.height, 56);
  EXPECT_EQ(clamped_up.width, 84);
  test::expect_contains(test::error_of([] { smart_resize(1, 201, 28, 56 * 56, 28 * 28 * 1280); }),
                        "aspect ratio must be at most 200");
}

TEST(Qwen2VLImageProcessor, ConfigReadsBothKeyStylesAndRefusesOtherPreprocessing) {
  const auto published =
      Qwen2VLImageProcessorConfig::from_json(Json{{"min_pixels", 3136},
                                                  {"max_pixels", 12845056},
                                                  {"size", {{"shortest_edge", 1}, {"longest_edge", 2}}}},
                                             "p.json");
  EXPECT_EQ(published.min_pixels, 3136);
  EXPECT_EQ(published.max_pixels, 12845056);
  const auto sized = Qwen2VLImageProcessorConfig::from_json(
      Json{{"size", {{"shortest_edge", 100}, {"longest_edge", 200}}}}, "s.json");
  EXPECT_EQ(sized.min_pixels, 100);
  EXPECT_EQ(sized.max_pixels, 200);
  test::expect_contains(test::error_of([] {
                          Qwen2VLImageProcessorConfig::from_json(Json{{"resample", 2}}, "r.json");
                        }),
                        "resample 2 is not supported");
  test::expect_contains(test::error_of([] {
                          Qwen2VLImageProcessorConfig::from_json(Json{{"do_normalize", false}}, "n.json");
                        }),
                        "do_normalize false is not supported");
}

class VisionTowerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionTowerGolden, ImageEmbedsMatchTransformers) {
  const std::string folder = "vision/" + GetParam();
  const std::filesystem::path dir = test::source_path("tests/golden/" + folder);
  const auto config = Qwen2_5_VLVisionConfig::from_file(dir / "config.json");
  const Qwen2_5_VisionTransformerPretrainedModel model(
      config, test::open_golden_model(folder, /*text_encoder=*/true));
  const WeightSource golden = test::open_golden(folder);
  const auto grids = golden_grids(golden.get("image_grid_thw"));
  const Tensor expected = golden.get("image_embeds");

  const Tensor embeds = model.forward(golden.get("pixel_values"), grids);
  ASSERT_EQ(embeds.shape(), expected.shape());
  const double error = test::max_relative_error(embeds, expected);
  std::printf("[ parity ] %s image_embeds max relative error %.3g\n", folder.c_str(), error);
  RecordProperty("max_relative_error", std::to_string(error));
  // The float32 reference itself is within about 5e-6 of float64 here (golden.json).
  EXPECT_LE(error, 2e-5);
}

TEST_P(VisionTowerGolden, ProcessorOfSeveralPicturesGivesTheTowersInput) {
  const std::string folder = "vision/" + GetParam();
  const WeightSource golden = test::open_golden(folder);
  std::vector<RgbImage> pictures;
  for (int i = 0; golden.contains("picture_" + std::to_string(i)); ++i) {
    pictures.push_back(golden_picture(golden, "picture_" + std::to_string(i)));
  }
  const auto config = Qwen2VLImageProcessorConfig::from_file(test::source_path("tests/golden/" + folder) /
                                                             "preprocessor_config.json");
  const Qwen2VLImageFeatures features = preprocess_images(pictures, config);
  EXPECT_EQ(features.image_grid_thw, golden_grids(golden.get("image_grid_thw")));
  EXPECT_TRUE(test::bit_identical(features.pixel_values, golden.get("pixel_values")));
}

INSTANTIATE_TEST_SUITE_P(Configs, VisionTowerGolden,
                         ::testing::Values("tower_a_partial_windows", "tower_b_legacy_names_h4"));

TEST(VisionTower, WindowIndexKeepsPartialWindowsAndDropsEmptyOnes) {
  Qwen2_5_VLVisionConfig config;
  config.patch_size = 4;
  config.spatial_merge_size = 2;
  config.window_size = 24;  // 3x3 merged tokens a window
  // 7x5 merged tokens: windows of 3x3, 3x2, 3x3, 3x2, 1x3, 1x2; then 3x6 merged tokens: two full windows.
  const VisionWindows windows = get_window_index({{1, 14, 10}, {1, 6, 12}}, config);
  const std::vector<int64_t> expected_cu = {0, 36, 60, 96, 120, 132, 140, 176, 212};
  EXPECT_EQ(windows.cu_window_seqlens, expected_cu);
  ASSERT_EQ(windows.window_index.size(), 53u);
  const std::vector<int64_t> first_window = {0, 1, 2, 5, 6, 7, 10, 11, 12};
  EXPECT_EQ(std::vector<int64_t>(windows.window_index.begin(), windows.window_index.begin() + 9),
            first_window);
  EXPECT_EQ(windows.window_index[35], 35);  // the second image starts after the first one's 35 tokens
}

TEST(VisionTower, ParameterShapesAreTheCheckpointsTensors) {
  const std::string folder = "vision/tower_a_partial_windows";
  const auto config =
      Qwen2_5_VLVisionConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json");
  const WeightSource weights = test::open_golden_model(folder, /*text_encoder=*/true);
  for (const auto& [name, shape] : Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(config)) {
    EXPECT_EQ(weights.info(name).shape, shape) << name;
  }
  // visit() names every weight once, so the planner can move them all.
  Qwen2_5_VisionTransformerPretrainedModel model(config, weights);
  std::vector<std::string> visited;
  model.visit([&](const std::string& name, Tensor&) { visited.push_back(name); });
  std::vector<std::string> expected;
  for (const auto& entry : Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(config)) {
    expected.push_back(entry.first);
  }
  std::sort(visited.begin(), visited.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(visited, expected);
  int64_t visual_tensors = 0;
  for (const std::string& name : weights.names()) visual_tensors += name.starts_with("model.visual.");
  EXPECT_EQ(static_cast<size_t>(visual_tensors),
            Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(config).size());
}

TEST(VisionTower, ReadsThePublishedSevenBillionConfig) {
  // vision_config as the published Qwen-Image text_encoder/config.json writes it (older flat style).
  const Json published = {{"vision_config",
                           {{"depth", 32},
                            {"fullatt_block_indexes", {7, 15, 23, 31}},
                            {"hidden_act", "silu"},
                            {"hidden_size", 1280},
                            {"in_chans", 3},
                            {"intermediate_size", 3420},
                            {"num_heads", 16},
                            {"out_hidden_size", 3584},
                            {"patch_size", 14},
                            {"spatial_merge_size", 2},
                            {"spatial_patch_size", 14},
                            {"temporal_patch_size", 2},
                            {"tokens_per_second", 2},
                            {"window_size", 112}}}};
  const auto config = Qwen2_5_VLVisionConfig::from_json(published, "config.json");
  EXPECT_EQ(config.head_dim(), 80);
  EXPECT_EQ(config.in_channels, 3);
  EXPECT_EQ(config.fullatt_block_indexes, (std::vector<int64_t>{7, 15, 23, 31}));
  EXPECT_EQ(config.rope_theta, 10000.0);
  Json gelu = published;
  gelu["vision_config"]["hidden_act"] = "gelu";
  test::expect_contains(test::error_of([&] { Qwen2_5_VLVisionConfig::from_json(gelu, "config.json"); }),
                        "hidden_act \"gelu\" is not supported");
  // transformers 5.24 builds this tower with 390 tensors holding 676,550,144 parameters.
  const auto shapes = Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(config);
  int64_t parameters = 0;
  for (const auto& entry : shapes) parameters += shape_numel(entry.second);
  EXPECT_EQ(shapes.size(), 390u);
  EXPECT_EQ(parameters, 676550144);
}

}  // namespace
}  // namespace canvas
