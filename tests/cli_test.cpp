// The `canvas generate` command end to end: exit codes, the PNG and its metadata, and error messages.
#include <gtest/gtest.h>

#include <cstdio>

#include "io/png_image.h"
#include "test_util.h"

namespace canvas {
namespace {

test::CommandResult run_canvas(const std::string& arguments) {
  return test::run_built_program("src/canvas", arguments);
}

std::string model_argument() {
  return "--model " + test::source_path("models/tiny-qwen-image").string();
}

TEST(Cli, GenerateWritesPngWithReproducibleMetadata) {
  auto output = test::scratch_dir("cli-generate") / "fox.png";
  test::CommandResult result = run_canvas(
      "generate " + model_argument() +
      " --prompt 'a red fox' --steps 2 --width 48 --height 32 --seed 11 --output " + output.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  RgbImage image = read_png(output);
  EXPECT_EQ(image.width, 48);
  EXPECT_EQ(image.height, 32);
  std::string parameters, settings;
  for (const PngTextChunk& chunk : image.text) {
    if (chunk.key == "parameters") parameters = chunk.text;
    if (chunk.key == "canvas") settings = chunk.text;
  }
  EXPECT_NE(parameters.find("a red fox\nNegative prompt:  \nSteps: 2"), std::string::npos) << parameters;
  EXPECT_NE(parameters.find("Seed: 11, Size: 48x32"), std::string::npos) << parameters;
  nlohmann::json json = nlohmann::json::parse(settings);
  EXPECT_EQ(json.at("seed"), 11);
  EXPECT_EQ(json.at("steps"), 2);
  EXPECT_EQ(json.at("width"), 48);
  EXPECT_TRUE(json.at("true_cfg").get<bool>());
  EXPECT_EQ(json.at("negative_prompt_used"), " ");
  EXPECT_GT(json.at("timings_s").at("total").get<double>(), 0.0);
}

TEST(Cli, BadSizeFailsClearlyAndWritesNothing) {
  auto output = test::scratch_dir("cli-bad-size") / "bad.png";
  test::CommandResult result =
      run_canvas("generate " + model_argument() + " --prompt x --steps 2 --width 50 --height 32 --output " +
                 output.string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("multiples of 16"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(output));
}

TEST(Cli, MissingModelFailsClearly) {
  auto output = test::scratch_dir("cli-missing-model") / "x.png";
  test::CommandResult result =
      run_canvas("generate --model /nonexistent/model --prompt x --output " + output.string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("/nonexistent/model"), std::string::npos) << result.output;
}

TEST(Cli, MissingRequiredOptionIsAUsageError) {
  test::CommandResult result = run_canvas("generate --prompt x");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("--model"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace canvas
