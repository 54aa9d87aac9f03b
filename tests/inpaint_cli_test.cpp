// `canvas inpaint` and `canvas generate --image` end to end: the golden cases run from the command line give
// the reference's picture and latents, and bad masks are refused (or stretched, as the reference does)
// before any weight loads.
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

std::string golden_file(const std::string& name, const std::string& file) {
  return test::source_path("tests/golden/inpaint/" + name + "/" + file).string();
}

const std::string kModel = " --model " + test::source_path("models/tiny-qwen-image").string();
const std::string kEditModel = " --model " + test::source_path("models/tiny-qwen-image-edit").string();

void expect_latents_match(const fs::path& npy, const std::string& name) {
  const Tensor expected = test::open_golden("inpaint/" + name).get("latents");
  const std::vector<float> values = test::npy_floats(npy);
  ASSERT_EQ(static_cast<int64_t>(values.size()), expected.numel());
  test::expect_close(Tensor::from_floats(values, expected.shape()), expected, 1e-4);
}

// A picture of one grey level.
fs::path write_plain(const fs::path& folder, const std::string& name, int64_t width, int64_t height,
                     uint8_t level) {
  RgbImage image{width, height, std::vector<uint8_t>(static_cast<size_t>(width * height * 3), level), {}};
  write_png(folder / name, image);
  return folder / name;
}

TEST(InpaintCli, TheCropCaseGivesTheReferencesPictureAndLatents) {
  const fs::path folder = test::scratch_dir("inpaint-cli-crop");
  const test::CommandResult result = run_canvas(
      "inpaint" + kModel + " --image " + golden_file("e_inpaint_crop", "image.png") + " --mask " +
      golden_file("e_inpaint_crop", "mask.png") +
      " --prompt 'a hot air balloon' --steps 5 --strength 0.8 --seed 35 --cfg-scale 1 --width 64 --height 48 "
      "--padding-mask-crop 6 --output " +
      (folder / "out.png").string() + " --save-latents " + (folder / "out.npy").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  test::expect_contains(result.output, "VAE encode");
  const RgbImage image = read_image(folder / "out.png").rgb;
  const RgbImage expected =
      test::golden_picture(test::open_golden("inpaint/e_inpaint_crop"), "image_overlaid");
  ASSERT_EQ(image.width, expected.width);
  ASSERT_EQ(image.height, expected.height);
  int largest = 0;
  for (size_t i = 0; i < image.pixels.size(); ++i)
    largest = std::max(largest, std::abs(int{image.pixels[i]} - int{expected.pixels[i]}));
  EXPECT_LE(largest, 2);
  expect_latents_match(folder / "out.npy", "e_inpaint_crop");
  const nlohmann::json json = nlohmann::json::parse(test::png_text(image, "canvas"));
  EXPECT_EQ(json.at("task"), "inpaint");
  EXPECT_EQ(json.at("padding_mask_crop"), 6);
  ASSERT_EQ(json.at("inputs").size(), 2u);
  EXPECT_EQ(json.at("inputs")[1].at("width"), 120);
}

TEST(InpaintCli, GenerateWithAnImageRunsImg2ImgAtThePicturesSize) {
  const fs::path folder = test::scratch_dir("inpaint-cli-img2img");
  const test::CommandResult result = run_canvas(
      "generate" + kModel + " --image " + golden_file("a_img2img", "image.png") +
      " --prompt 'a lighthouse on a cliff at dusk' --steps 5 --strength 0.6 --seed 31 --cfg-scale 1 "
      "--width 64 --height 48 --output " +
      (folder / "out.png").string() + " --save-latents " + (folder / "out.npy").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_latents_match(folder / "out.npy", "a_img2img");
  EXPECT_EQ(nlohmann::json::parse(test::png_text(read_image(folder / "out.png").rgb, "canvas")).at("task"),
            "img2img");

  // Without a size, the picture's (80x56) floored to 16: 80x48.
  const test::CommandResult unsized =
      run_canvas("generate" + kModel + " --image " + golden_file("a_img2img", "image.png") +
                 " --prompt x --steps 2 --output " + (folder / "unsized.png").string());
  ASSERT_EQ(unsized.exit_code, 0) << unsized.output;
  EXPECT_EQ(read_image(folder / "unsized.png").rgb.width, 80);
  EXPECT_EQ(read_image(folder / "unsized.png").rgb.height, 48);
}

TEST(InpaintCli, BadMasksAreRefusedBeforeTheWeightsLoad) {
  const fs::path folder = test::scratch_dir("inpaint-cli-bad");
  const fs::path picture = write_plain(folder, "picture.png", 64, 48, 120);
  const fs::path small = write_plain(folder, "small.png", 32, 24, 255);
  const fs::path black = write_plain(folder, "black.png", 64, 48, 0);
  const std::string job = "inpaint" + kModel + " --prompt x --steps 2 --image " + picture.string() +
                          " --output " + (folder / "out.png").string();
  const std::pair<std::string, std::string> cases[] = {
      {"", "needs --mask, --mask-from-alpha or --outpaint"},
      {" --mask " + (folder / "missing.png").string(), "missing.png"},
      {" --mask-from-alpha", "alpha"},
      {" --mask " + small.string() + " --padding-mask-crop 4", "the mask must have the picture's size"},
      {" --mask " + black.string() + " --padding-mask-crop 4", "the mask is empty"},
      {" --mask " + black.string() + " --strength 0", "leaves no step"},
  };
  for (const auto& [options, message] : cases) {
    const test::CommandResult result = run_canvas(job + options);
    EXPECT_EQ(result.exit_code, 1) << options << "\n" << result.output;
    test::expect_contains(result.output, message);
    // Refused from the configs alone: no weight was loaded, no plan made.
    EXPECT_EQ(result.output.find("plan:"), std::string::npos) << result.output;
  }
  const test::CommandResult edit_size =
      run_canvas("inpaint" + kEditModel + " --prompt x --steps 2 --image " + picture.string() + " --mask " +
                 black.string() + " --width 32 --output " + (folder / "out.png").string());
  EXPECT_EQ(edit_size.exit_code, 1) << edit_size.output;
  test::expect_contains(edit_size.output, "give no width or height");
  EXPECT_FALSE(fs::exists(folder / "out.png"));
}

TEST(InpaintCli, AMaskOfAnotherSizeIsStretchedAndABlackOneKeepsThePicture) {
  const fs::path folder = test::scratch_dir("inpaint-cli-stretch");
  const fs::path picture = write_plain(folder, "picture.png", 64, 48, 120);
  const fs::path small = write_plain(folder, "small.png", 32, 24, 255);
  const fs::path black = write_plain(folder, "black.png", 64, 48, 0);
  const std::string job = "inpaint" + kModel + " --prompt x --steps 2 --image " + picture.string();
  const test::CommandResult stretched =
      run_canvas(job + " --mask " + small.string() + " --output " + (folder / "stretched.png").string());
  ASSERT_EQ(stretched.exit_code, 0) << stretched.output;
  test::expect_contains(stretched.output, "stretched to the working size");
  const test::CommandResult kept =
      run_canvas(job + " --mask " + black.string() + " --output " + (folder / "kept.png").string() +
                 " --save-latents " + (folder / "kept.npy").string());
  ASSERT_EQ(kept.exit_code, 0) << kept.output;
  test::expect_contains(kept.output, "nothing is repainted");
}

TEST(InpaintCli, BadOutpaintMarginsAreRefusedAndGoodOnesGrowToTheMultiple) {
  const fs::path folder = test::scratch_dir("inpaint-cli-outpaint");
  const fs::path picture = write_plain(folder, "picture.png", 32, 24, 120);
  const std::string job = "inpaint" + kModel + " --prompt x --steps 2 --image " + picture.string() +
                          " --output " + (folder / "out.png").string();
  const std::pair<std::string, std::string> cases[] = {
      {" --outpaint 16,0,16", "four margins"},
      {" --outpaint 16,0,16,0,", "four margins"},
      {" --outpaint a,0,0,0", "four margins"},
      {" --outpaint=-1,0,0,0", "each 0 or more"},
      {" --outpaint 0,0,0,0", "at least one margin"},
      {" --outpaint 0,0,4096,0", "at most 4096"},
      {" --outpaint 8,0,0,0 --mask-blur 2", "makes its own mask"},
      {" --outpaint 8,0,0,0 --mask " + picture.string(), "makes its own mask"},
  };
  for (const auto& [options, message] : cases) {
    const test::CommandResult result = run_canvas(job + options);
    EXPECT_EQ(result.exit_code, 1) << options << "\n" << result.output;
    test::expect_contains(result.output, message);
    EXPECT_EQ(result.output.find("plan:"), std::string::npos) << result.output;
  }
  EXPECT_FALSE(fs::exists(folder / "out.png"));

  const test::CommandResult grown = run_canvas(job + " --outpaint 8,0,0,0");
  ASSERT_EQ(grown.exit_code, 0) << grown.output;
  test::expect_contains(grown.output, "margins grow to 8,0,8,8");
  const RgbImage image = read_image(folder / "out.png").rgb;
  EXPECT_EQ(image.width, 48);
  EXPECT_EQ(image.height, 32);
  for (int64_t y = 0; y < 24; ++y)
    for (int64_t x = 8; x < 40; ++x)
      ASSERT_EQ(image.pixels[static_cast<size_t>((y * 48 + x) * 3)], 120) << x << "," << y;
  const nlohmann::json json = nlohmann::json::parse(test::png_text(image, "canvas"));
  EXPECT_EQ(json.at("task"), "outpaint");
  EXPECT_EQ(json.at("outpaint"), nlohmann::json({8, 0, 8, 8}));
  EXPECT_EQ(json.at("strength"), 1.0);
}

}  // namespace
}  // namespace canvas
