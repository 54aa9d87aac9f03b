// QwenImageTransformer2DModel against diffusers: square and non-square images, padded text masks,
// batch 2, zero_cond_t, and several images in one sequence (as Edit uses).
#include <gtest/gtest.h>

#include "io/json_config.h"
#include "models/qwen_image_transformer.h"
#include "test_util.h"

namespace canvas {
namespace {

class TransformerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TransformerGolden, SampleMatchesDiffusers) {
  const std::string folder = "transformer/" + GetParam();
  QwenImageTransformer2DModel model = test::load_golden_transformer(folder);
  WeightSource golden = test::open_golden(folder);
  nlohmann::json parameters = test::golden_json(folder);
  Tensor mask =
      golden.contains("encoder_hidden_states_mask") ? golden.get("encoder_hidden_states_mask") : Tensor();
  std::vector<ImageShape> shapes = test::first_sample_shapes(parameters.at("img_shapes"));

  Tensor sample = model.forward(golden.get("hidden_states"), golden.get("encoder_hidden_states"), mask,
                                golden.get("timestep"), shapes);
  double error = test::relative_error(sample, golden.get("sample"));
  EXPECT_LE(error, 1e-4) << folder;
  std::printf("[ parity ] %s sample relative error %.3g\n", folder.c_str(), error);
}

TEST_P(TransformerGolden, TimestepEmbeddingAndRotaryTablesMatch) {
  const std::string folder = "transformer/" + GetParam();
  QwenImageTransformer2DModel model = test::load_golden_transformer(folder);
  WeightSource golden = test::open_golden(folder);
  nlohmann::json parameters = test::golden_json(folder);
  std::vector<ImageShape> shapes = test::first_sample_shapes(parameters.at("img_shapes"));

  Tensor timestep = golden.get("timestep");
  if (model.config().zero_cond_t) {
    std::vector<float> doubled = timestep.to_floats();
    doubled.resize(doubled.size() * 2, 0.0f);
    timestep = Tensor::from_floats(doubled, {static_cast<int64_t>(doubled.size())});
  }
  EXPECT_LE(test::relative_error(model.timestep_embedding(timestep, DType::F32), golden.get("temb")), 1e-5);

  int64_t text_tokens = golden.get("encoder_hidden_states").dim(1);
  QwenImageRotary rotary = model.rotary(shapes, text_tokens, Device::cpu(), DType::F32);
  Tensor rope_img = golden.get("rope_img"), rope_txt = golden.get("rope_txt");
  EXPECT_LE(test::max_abs_difference(rotary.image_cos, rope_img.select(2, 0).contiguous()), 1e-6);
  EXPECT_LE(test::max_abs_difference(rotary.image_sin, rope_img.select(2, 1).contiguous()), 1e-6);
  EXPECT_LE(test::max_abs_difference(rotary.text_cos, rope_txt.select(2, 0).contiguous()), 1e-6);
  EXPECT_LE(test::max_abs_difference(rotary.text_sin, rope_txt.select(2, 1).contiguous()), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Configs, TransformerGolden,
                         ::testing::Values("t1_base", "t2_nonsquare_odd", "t3_batch2_padded_mask",
                                           "t4_zero_cond_t", "t5_multi_image_edit"));

TEST(Transformer, PaddedTextDoesNotChangeTheImage) {
  // t3's second sample has 6 real text tokens; dropping the padding must not change its output.
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t3_batch2_padded_mask");
  WeightSource golden = test::open_golden("transformer/t3_batch2_padded_mask");
  nlohmann::json parameters = test::golden_json("transformer/t3_batch2_padded_mask");
  std::vector<ImageShape> shapes = test::first_sample_shapes(parameters.at("img_shapes"));
  Tensor sample =
      model.forward(golden.get("hidden_states").slice(0, 1, 2).contiguous(),
                    golden.get("encoder_hidden_states").slice(0, 1, 2).slice(1, 0, 6).contiguous(), {},
                    golden.get("timestep").slice(0, 1, 2).contiguous(), shapes);
  // Text RoPE positions depend only on the image size, so only the padded keys differ: masked out.
  EXPECT_LE(test::relative_error(sample, golden.get("sample").slice(0, 1, 2).contiguous()), 1e-4);
}

TEST(Transformer, RejectsMismatchedInputs) {
  QwenImageTransformer2DModel model = test::load_golden_transformer("transformer/t1_base");
  WeightSource golden = test::open_golden("transformer/t1_base");
  Tensor hidden = golden.get("hidden_states"), text = golden.get("encoder_hidden_states");
  Tensor timestep = golden.get("timestep");
  EXPECT_THROW(model.forward(hidden, text, {}, timestep, {{1, 3, 4}}), Error);  // 12 tokens, not 16
  EXPECT_THROW(model.forward(text, text, {}, timestep, {{1, 4, 4}}), Error);    // wrong channel count
  EXPECT_THROW(model.forward(hidden, hidden, {}, timestep, {{1, 4, 4}}), Error);
}

TEST(TransformerConfig, RejectsUnsupportedVariants) {
  nlohmann::json config = read_json_file(test::source_path("tests/golden/transformer/t1_base/config.json"));
  config["axes_dims_rope"] = {4, 6, 8};
  EXPECT_THROW(QwenImageTransformerConfig::from_json(config, "config.json"), Error);
  config["axes_dims_rope"] = {4, 6, 6};
  config["use_layer3d_rope"] = true;
  EXPECT_THROW(QwenImageTransformerConfig::from_json(config, "config.json"), Error);
}

}  // namespace
}  // namespace canvas

namespace canvas {
namespace {

TEST(TransformerConfig, EachBadSizeIsReportedUnderItsOwnKey) {
  const nlohmann::json valid =
      read_json_file(test::source_path("tests/golden/transformer/t1_base/config.json"));
  const std::pair<const char*, int> fields[] = {
      {"num_layers", -1},         {"patch_size", 0},  {"num_attention_heads", 0}, {"attention_head_dim", -4},
      {"joint_attention_dim", 0}, {"in_channels", 0}, {"out_channels", -1}};
  for (const auto& [field, value] : fields) {
    nlohmann::json config = valid;
    config[field] = value;
    const std::string message =
        test::error_of([&] { QwenImageTransformerConfig::from_json(config, "transformer/config.json"); });
    EXPECT_NE(
        message.find(std::string("key \"") + field + "\" in 'transformer/config.json' must be at least"),
        std::string::npos)
        << message;
    EXPECT_NE(message.find("got " + std::to_string(value)), std::string::npos) << message;
  }
}

TEST(Transformer, ParameterShapesListExactlyWhatLoads) {
  auto path = test::source_path("tests/golden/transformer/t4_zero_cond_t");
  QwenImageTransformerConfig config = QwenImageTransformerConfig::from_file(path / "config.json");
  QwenImageTransformer2DModel model(config, test::open_golden_model("transformer/t4_zero_cond_t"));
  std::map<std::string, Shape> visited;
  model.visit([&](const std::string& name, Tensor& tensor) { visited[name] = tensor.shape(); });
  std::map<std::string, Shape> declared;
  for (const auto& [name, shape] : QwenImageTransformer2DModel::parameter_shapes(config))
    declared[name] = shape;
  EXPECT_EQ(visited, declared);
  EXPECT_EQ(declared.size(), test::open_golden_model("transformer/t4_zero_cond_t").size());
}

TEST(Transformer, FullSizeConfigHas20Point43BillionParameters) {
  QwenImageTransformerConfig config;
  config.num_layers = 60;
  config.attention_head_dim = 128;
  config.num_attention_heads = 24;
  config.joint_attention_dim = 3584;
  config.axes_dims_rope = {16, 56, 56};
  int64_t parameters = 0;
  for (const auto& [name, shape] : QwenImageTransformer2DModel::parameter_shapes(config))
    parameters += shape_numel(shape);
  EXPECT_EQ(parameters, 20430401088);
}

}  // namespace
}  // namespace canvas
