// Qwen2.5-VL text encoder against transformers' hidden states, in four configs: GQA ratios, head dims,
// tied/untied embeddings, nested/flat configs, new/legacy tensor names, sharded files.
#include <gtest/gtest.h>

#include <map>

#include "io/json_config.h"
#include "io/model_layout.h"
#include "models/qwen2_5_vl_text.h"
#include "test_util.h"

namespace canvas {
namespace {

class TextEncoderGolden : public ::testing::TestWithParam<std::string> {};

Qwen2_5_VLTextModel load_text_encoder(const std::string& folder) {
  return Qwen2_5_VLTextModel(
      Qwen2_5_VLTextConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json"),
      test::open_golden_model(folder, /*text_encoder=*/true));
}

TEST_P(TextEncoderGolden, LastHiddenStateMatchesTransformers) {
  const std::string folder = "text_encoder/" + GetParam();
  Qwen2_5_VLTextModel model = load_text_encoder(folder);
  WeightSource golden = test::open_golden(folder);
  Tensor input_ids = golden.get("input_ids");
  Tensor attention_mask = golden.get("attention_mask");
  Tensor expected = golden.get("last_hidden_state");

  Tensor hidden = model.forward(input_ids, attention_mask);
  ASSERT_EQ(hidden.shape(), expected.shape());
  // Every row, padded positions included: a padded query attends causally to the real keys, as in the
  // reference.
  double error = test::relative_error(hidden, expected);
  EXPECT_LE(error, 1e-4) << folder;
  RecordProperty("relative_error", std::to_string(error));
  std::printf("[ parity ] %s last_hidden_state relative error %.3g\n", folder.c_str(), error);

  // The second row alone, without padding, gives the same valid rows.
  Tensor alone = model.forward(input_ids.slice(0, 1, 2).slice(1, 0, 7).contiguous(),
                               attention_mask.slice(0, 1, 2).slice(1, 0, 7).contiguous());
  EXPECT_LE(test::relative_error(alone, golden.get("seq1_alone_last_hidden_state")), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Configs, TextEncoderGolden,
                         ::testing::Values("a_h4_kv2_untied", "b_h4_kv1_tied", "c_h2_kv2_hd24",
                                           "d_flat_legacy_h7_kv1"));

TEST(TextEncoderConfig, ReadsFlatAndNestedLayoutsAlike) {
  auto flat = Qwen2_5_VLTextConfig::from_file(
      test::source_path("tests/golden/text_encoder/d_flat_legacy_h7_kv1/config.json"));
  EXPECT_EQ(flat.hidden_size, 56);
  EXPECT_EQ(flat.num_attention_heads, 7);
  EXPECT_EQ(flat.num_key_value_heads, 1);
  EXPECT_EQ(flat.head_dim, 8);
  auto nested = Qwen2_5_VLTextConfig::from_file(
      test::source_path("tests/golden/text_encoder/a_h4_kv2_untied/config.json"));
  EXPECT_EQ(nested.hidden_size, 64);
  EXPECT_EQ(nested.num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(nested.rope_theta, 1e6);
}

TEST(TextEncoderConfig, RejectsInconsistentHeads) {
  nlohmann::json config = {{"vocab_size", 10},
                           {"hidden_size", 30},
                           {"intermediate_size", 8},
                           {"num_hidden_layers", 1},
                           {"num_attention_heads", 4},
                           {"num_key_value_heads", 2},
                           {"rope_scaling", {{"mrope_section", {1, 1, 1}}}}};
  EXPECT_THROW(Qwen2_5_VLTextConfig::from_json(config, "config.json"), Error);
  config["hidden_size"] = 32;
  config["num_key_value_heads"] = 3;
  EXPECT_THROW(Qwen2_5_VLTextConfig::from_json(config, "config.json"), Error);
  config["num_key_value_heads"] = 2;
  config["rope_scaling"]["mrope_section"] = {1, 1, 1};  // sums to 3, head_dim / 2 is 4
  EXPECT_THROW(Qwen2_5_VLTextConfig::from_json(config, "config.json"), Error);
}

TEST(TextEncoderConfig, BadSizesAreReportedUnderTheirOwnKeys) {
  const nlohmann::json valid = {{"vocab_size", 10},
                                {"hidden_size", 32},
                                {"intermediate_size", 8},
                                {"num_hidden_layers", 1},
                                {"num_attention_heads", 4},
                                {"num_key_value_heads", 2},
                                {"rope_scaling", {{"mrope_section", {2, 1, 1}}}}};
  for (const char* field :
       {"num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size"}) {
    nlohmann::json config = valid;
    config[field] = -1;
    const std::string message =
        test::error_of([&] { Qwen2_5_VLTextConfig::from_json(config, "config.json"); });
    EXPECT_NE(message.find(std::string("key \"") + field + "\" in 'config.json' must be at least"),
              std::string::npos)
        << message;
  }
}

TEST(TextEncoder, WrongWeightShapeIsAClearError) {
  auto folder = test::source_path("tests/golden/text_encoder/a_h4_kv2_untied");
  nlohmann::json config = read_json_file(folder / "config.json");
  config["text_config"]["intermediate_size"] = 12345;
  WeightSource weights = test::open_golden_model("text_encoder/a_h4_kv2_untied", /*text_encoder=*/true);
  try {
    Qwen2_5_VLTextModel model(Qwen2_5_VLTextConfig::from_json(config, "config.json"), weights);
    FAIL() << "a config that disagrees with the weights must not load";
  } catch (const Error& error) {
    test::expect_contains(error.what(), "mlp.gate_proj");
  }
}

TEST(TextEncoder, ParameterShapesListExactlyWhatLoads) {
  // The untied golden checkpoint also holds lm_head, which the text path never loads.
  WeightSource weights = test::open_golden_model("text_encoder/a_h4_kv2_untied", /*text_encoder=*/true);
  Qwen2_5_VLTextConfig config = Qwen2_5_VLTextConfig::from_file(
      test::source_path("tests/golden/text_encoder/a_h4_kv2_untied/config.json"));
  Qwen2_5_VLTextModel model(config, weights);
  std::map<std::string, Shape> visited;
  model.visit([&](const std::string& name, Tensor& tensor) { visited[name] = tensor.shape(); });
  std::map<std::string, Shape> declared;
  for (const auto& [name, shape] : Qwen2_5_VLTextModel::parameter_shapes(config)) declared[name] = shape;
  EXPECT_EQ(visited, declared);
  for (const auto& [name, shape] : declared) EXPECT_EQ(weights.info(name).shape, shape) << name;
}

TEST(TextEncoder, FullSizeLanguageModelHas7Point07BillionParameters) {
  Qwen2_5_VLTextConfig config;
  config.vocab_size = 152064;
  config.hidden_size = 3584;
  config.intermediate_size = 18944;
  config.num_hidden_layers = 28;
  config.num_attention_heads = 28;
  config.num_key_value_heads = 4;
  config.head_dim = 128;
  int64_t parameters = 0;
  for (const auto& [name, shape] : Qwen2_5_VLTextModel::parameter_shapes(config))
    parameters += shape_numel(shape);
  EXPECT_EQ(parameters, 7070619136);
}

}  // namespace
}  // namespace canvas
