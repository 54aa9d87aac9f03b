// PNG writing: a write that fails says why, and leaves no partial image.
#include "io/png_image.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

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

TEST(PngImage, EncodesInMemoryWithItsTextChunks) {
  RgbImage image = noise_image(24);
  image.width = 32;  // not square
  image.height = 18;
  image.text.push_back({"canvas", "{\"prompt\": \"ein Fuchs, 狐\"}"});
  const std::vector<uint8_t> bytes = encode_png(image);
  const DecodedImage decoded = decode_image(bytes, "encoded.png");
  EXPECT_EQ(decoded.format, ImageFormat::Png);
  EXPECT_FALSE(decoded.has_alpha());
  EXPECT_EQ(decoded.rgb.width, 32);
  EXPECT_EQ(decoded.rgb.height, 18);
  EXPECT_EQ(decoded.rgb.pixels, image.pixels);
  EXPECT_EQ(test::png_text(decoded.rgb, "parameters"), "a red fox");
  EXPECT_EQ(test::png_text(decoded.rgb, "canvas"), "{\"prompt\": \"ein Fuchs, 狐\"}");

  // write_png writes these very bytes.
  const fs::path path = test::scratch_dir("png-encode") / "a.png";
  write_png(path, image);
  std::ifstream file(path, std::ios::binary);
  const std::vector<uint8_t> written{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  EXPECT_EQ(written, bytes);
}

TEST(PngImage, EncodingRefusesImagesItCannotWrite) {
  RgbImage empty;
  EXPECT_NE(test::error_of([&] { encode_png(empty); }).find("cannot write a 0x0 PNG"), std::string::npos);
  RgbImage short_pixels = noise_image(4);
  short_pixels.pixels.pop_back();
  EXPECT_NE(test::error_of([&] { encode_png(short_pixels); }).find("does not match 4x4"), std::string::npos);
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
