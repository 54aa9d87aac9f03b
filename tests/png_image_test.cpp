// PNG writing: a write that fails says why, and leaves no partial image.
#include "io/png_image.h"

#include <gtest/gtest.h>

#include "image/decode.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

RgbImage noise_image(int64_t side) {
  RgbImage image;
  image.width = image.height = side;
  image.pixels.resize(static_cast<size_t>(side * side * 3));
  uint32_t state = 12345;
  // Incompressible bytes, so the file is about as large as the pixels.
  for (uint8_t& value : image.pixels)
    value = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
  image.text.push_back({"parameters", "a red fox"});
  return image;
}

TEST(PngImage, WritesAndReadsBack) {
  const fs::path path = test::scratch_dir("png-round-trip") / "a.png";
  const RgbImage image = noise_image(64);
  write_png(path, image);
  const RgbImage read = read_image(path).rgb;
  EXPECT_EQ(read.pixels, image.pixels);
  ASSERT_EQ(read.text.size(), 1u);
  EXPECT_EQ(read.text[0].text, "a red fox");
}

TEST(PngImage, AFullDiskIsReportedWithTheSystemsReasonAndLeavesNoFile) {
  const fs::path dir = test::scratch_dir("png-full");
  std::string message;
  {
    test::FileSizeLimit full_disk(16 * 1024);
    message = test::error_of([&] { write_png(dir / "a.png", noise_image(256)); });
  }
  EXPECT_EQ(message, "cannot write " + (dir / "a.png").string() + ": File too large");
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace canvas
