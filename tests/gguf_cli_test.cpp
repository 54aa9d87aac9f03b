// `canvas generate --model tiny.gguf --text-encoder ... --vae ...` end to end on the tiny model's transformer
// as gguf-py wrote it (tests/golden/gguf/tiny): the final latents stay within each type's tolerance of the
// f32 model's, and missing parts are named with the option that gives them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

const fs::path& tiny_model() {
  static const fs::path path = test::source_path("models/tiny-qwen-image");
  return path;
}

test::CommandResult generate(const std::string& model_arguments, const fs::path& latents) {
  return test::run_built_program("src/canvas", "generate " + model_arguments +
                                                   " --prompt 'a red fox' --steps 2 --width 32 --height 32 "
                                                   "--seed 5 --output " +
                                                   (latents.parent_path() / "image.png").string() +
                                                   " --save-latents " + latents.string());
}

// The tiny transformer in `type` with its config.json beside it, as a user keeps a file of a model whose
// head size is not Qwen-Image's.
fs::path gguf_with_config(const std::string& type, const std::string& test_name) {
  const fs::path folder = test::scratch_dir("gguf_cli_" + test_name);
  const std::string name = "tiny-qwen-image-" + type + ".gguf";
  fs::copy_file(test::source_path("tests/golden/gguf/tiny/" + name), folder / name);
  fs::copy_file(tiny_model() / "transformer" / "config.json", folder / "config.json");
  return folder / name;
}

std::string parts() {
  return " --text-encoder " + tiny_model().string() + " --vae " + (tiny_model() / "vae").string();
}

const std::vector<float>& f32_latents() {
  static const std::vector<float> latents = [] {
    const fs::path path = test::scratch_dir("gguf_cli_f32") / "latents.npy";
    const test::CommandResult result = generate("--model " + tiny_model().string(), path);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return test::npy_floats(path);
  }();
  return latents;
}

double relative_difference(const std::vector<float>& actual, const std::vector<float>& expected) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    difference += (actual[i] - expected[i]) * double(actual[i] - expected[i]);
    norm += expected[i] * double(expected[i]);
  }
  return std::sqrt(difference / norm);
}

// Tolerances on the relative L2 difference of the final latents from the f32 model's, about twice what was
// measured (7.5e-3 for Q8_0, 0.114 for Q4_0: the tiny model's random weights quantize poorly in four bits).
// The dequantization itself is exact (gguf_dequant_test.cpp); this bounds what quantization does to a job.
struct Case {
  std::string type;
  double tolerance;
};

class GgufCli : public testing::TestWithParam<Case> {};

TEST_P(GgufCli, GeneratesWithinTheTypesToleranceOfTheF32Model) {
  const fs::path gguf = gguf_with_config(GetParam().type, GetParam().type);
  const fs::path latents = gguf.parent_path() / "latents.npy";
  const test::CommandResult result = generate("--model " + gguf.string() + parts(), latents);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::vector<float> actual = test::npy_floats(latents);
  ASSERT_EQ(actual.size(), f32_latents().size());
  const double difference = relative_difference(actual, f32_latents());
  EXPECT_GT(difference, 0.0);
  EXPECT_LT(difference, GetParam().tolerance);
  std::printf("%s: relative difference %.3g\n", GetParam().type.c_str(), difference);
}

INSTANTIATE_TEST_SUITE_P(Types, GgufCli, testing::Values(Case{"q8_0", 1.5e-2}, Case{"q4_0", 0.2}),
                         [](const testing::TestParamInfo<Case>& param_info) {
                           return param_info.param.type;
                         });

TEST(GgufCliParts, MissingPartsNameTheirOption) {
  const fs::path gguf = gguf_with_config("q8_0", "parts");
  const fs::path latents = gguf.parent_path() / "latents.npy";
  const test::CommandResult no_text_encoder =
      generate("--model " + gguf.string() + " --vae " + (tiny_model() / "vae").string(), latents);
  EXPECT_NE(no_text_encoder.exit_code, 0);
  test::expect_contains(no_text_encoder.output, "pass --text-encoder");
  const test::CommandResult no_vae =
      generate("--model " + gguf.string() + " --text-encoder " + tiny_model().string(), latents);
  EXPECT_NE(no_vae.exit_code, 0);
  test::expect_contains(no_vae.output, "pass --vae");
  const test::CommandResult diffusers_with_parts =
      generate("--model " + tiny_model().string() + parts(), latents);
  EXPECT_NE(diffusers_with_parts.exit_code, 0);
  test::expect_contains(diffusers_with_parts.output, "brings its own");

  // Without its config.json the tiny transformer's RoPE axes cannot be inferred (its head size is 16).
  fs::remove(gguf.parent_path() / "config.json");
  const test::CommandResult no_config = generate("--model " + gguf.string() + parts(), latents);
  EXPECT_NE(no_config.exit_code, 0);
  test::expect_contains(no_config.output, "axes_dims_rope");
  test::expect_contains(no_config.output, "config.json");
}

}  // namespace
}  // namespace canvas
