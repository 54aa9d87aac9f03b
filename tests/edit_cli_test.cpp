// The `canvas edit` command end to end: its pictures are read and checked before any model is loaded, and
// a finished edit records its inputs.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "image/decode.h"
#include "io/png_image.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

test::CommandResult run_canvas(const std::string& arguments) {
  return test::run_built_program("src/canvas", arguments);
}

// A 40x24 picture with a gradient.
fs::path write_picture(const fs::path& folder, const std::string& name) {
  RgbImage image{40, 24, {}, {}};
  for (int64_t y = 0; y < image.height; ++y)
    for (int64_t x = 0; x < image.width; ++x)
      for (int64_t c = 0; c < 3; ++c) image.pixels.push_back(static_cast<uint8_t>(x * 5 + y * 3 + c * 40));
  write_png(folder / name, image);
  return folder / name;
}

TEST(EditCli, BadPicturesAreRefusedBeforeLoadingAndNothingIsWritten) {
  const fs::path folder = test::scratch_dir("edit-cli-bad");
  const fs::path good = write_picture(folder, "good.png");
  std::ofstream(folder / "text.png") << "not a picture";
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::ofstream(folder / "truncated.png", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  const std::string job = "edit --model " + test::source_path("models/tiny-qwen-image").string() +
                          " --prompt x --steps 2 --output " + (folder / "out.png").string() + " --image ";
  const std::pair<std::string, std::string> cases[] = {
      {(folder / "missing.png").string(), "missing.png"},
      {(folder / "text.png").string(), "text.png"},
      {(folder / "truncated.png").string(), "truncated.png"},
      {folder.string(), folder.string()},
  };
  for (const auto& [image, message] : cases) {
    const test::CommandResult result = run_canvas(job + image);
    EXPECT_EQ(result.exit_code, 1) << result.output;
    test::expect_contains(result.output, message);
    EXPECT_EQ(result.output.find("Loading"), std::string::npos) << result.output;
  }
  EXPECT_FALSE(fs::exists(folder / "out.png"));
}

TEST(EditCli, ATextToImageModelIsRefusedBeforeItsWeightsLoad) {
  const fs::path folder = test::scratch_dir("edit-cli-t2i");
  const fs::path picture = write_picture(folder, "a.png");
  const test::CommandResult result = run_canvas(
      "edit --model " + test::source_path("models/tiny-qwen-image").string() +
      " --prompt x --steps 2 --image " + picture.string() + " --output " + (folder / "out.png").string());
  EXPECT_EQ(result.exit_code, 1) << result.output;
  test::expect_contains(result.output, "editing needs Qwen-Image-Edit");
  EXPECT_FALSE(fs::exists(folder / "out.png"));
}

TEST(EditCli, EditWritesThePngWithItsInputsAndTheLatents) {
  const fs::path folder = test::scratch_dir("edit-cli-run");
  const fs::path first = write_picture(folder, "first.png");
  const fs::path second = write_picture(folder, "second.png");
  const test::CommandResult result = run_canvas(
      "edit --model " + test::source_path("models/tiny-qwen-image-edit").string() + " --image " +
      first.string() + " --image " + second.string() +
      " --prompt 'swap them' --negative-prompt ' ' --steps 2 --seed 3 --width 40 --height 33 --output " +
      (folder / "out.png").string() + " --save-latents " + (folder / "out.npy").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  test::expect_contains(result.output, "vision encode");
  test::expect_contains(result.output, "VAE encode");
  const RgbImage image = read_image(folder / "out.png").rgb;
  // Floored to whole 16-pixel patches, as the reference does.
  EXPECT_EQ(image.width, 32);
  EXPECT_EQ(image.height, 32);
  const nlohmann::json json = nlohmann::json::parse(test::png_text(image, "canvas"));
  EXPECT_EQ(json.at("task"), "edit");
  EXPECT_EQ(json.at("text_positions"), "mrope");
  EXPECT_TRUE(json.at("true_cfg").get<bool>());
  ASSERT_EQ(json.at("inputs").size(), 2u);
  EXPECT_EQ(json.at("inputs")[1].at("width"), 40);
  EXPECT_EQ(json.at("inputs")[0].at("sha256").get<std::string>().size(), 64u);
  EXPECT_GT(json.at("timings_s").at("vision_encode").get<double>(), 0.0);
  EXPECT_FALSE(json.contains("max_sequence_length"));
  // [1, (32 / 16)^2 tokens, 64].
  EXPECT_EQ(test::npy_floats(folder / "out.npy").size(), 4u * 64u);
}

TEST(EditCli, AnImageIsRequired) {
  const test::CommandResult result = run_canvas("edit --model x --prompt x --output x.png");
  EXPECT_EQ(result.exit_code, 106) << result.output;
  test::expect_contains(result.output, "--image");
}

}  // namespace
}  // namespace canvas
