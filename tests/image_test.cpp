// Reading PNG, JPEG and WebP files and resizing them, against what Pillow gives
// (tests/golden/image/, written by tools/reference/make_image_goldens.py).
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "image/decode.h"
#include "image/orientation.h"
#include "image/resample.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using Json = nlohmann::json;

std::filesystem::path decode_corpus(const std::string& file) {
  return test::source_path("tests/golden/image/decode/" + file);
}

std::vector<uint8_t> file_bytes(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

// A golden U8 tensor [height, width, 3] (or [height, width] for alpha) as bytes.
std::vector<uint8_t> golden_bytes(const WeightSource& golden, const std::string& name) {
  const Tensor tensor = golden.get(name);
  EXPECT_EQ(tensor.dtype(), DType::U8) << name;
  const auto* data = tensor.data<uint8_t>();
  return {data, data + tensor.numel()};
}

RgbImage golden_image(const WeightSource& golden, const std::string& name) {
  const Tensor tensor = golden.get(name);
  RgbImage image;
  image.height = tensor.dim(0);
  image.width = tensor.dim(1);
  image.pixels = golden_bytes(golden, name);
  return image;
}

// "identical", or how many bytes differ and by how much at most.
std::string compare_bytes(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& expected) {
  if (actual.size() != expected.size()) {
    return std::to_string(actual.size()) + " bytes, expected " + std::to_string(expected.size());
  }
  int64_t differing = 0;
  int largest = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const int difference = std::abs(int{actual[i]} - int{expected[i]});
    differing += difference != 0;
    largest = std::max(largest, difference);
  }
  if (differing == 0) return "identical";
  return std::to_string(differing) + " of " + std::to_string(actual.size()) + " bytes differ, by up to " +
         std::to_string(largest);
}

TEST(ImageResample, MatchesPillowBitForBit) {
  const WeightSource golden = test::open_golden("image/resample");
  const Json cases = test::golden_json("image/resample").at("cases");
  ASSERT_GE(cases.size(), 50u);
  for (const Json& entry : cases) {
    const std::string expected_name = entry.at("expected");
    SCOPED_TRACE(expected_name);
    const ResampleFilter filter =
        entry.at("filter") == "lanczos" ? ResampleFilter::Lanczos : ResampleFilter::Bicubic;
    const RgbImage resized =
        resize(golden_image(golden, entry.at("source")), entry.at("width"), entry.at("height"), filter);
    const RgbImage expected = golden_image(golden, expected_name);
    ASSERT_EQ(resized.width, expected.width);
    ASSERT_EQ(resized.height, expected.height);
    EXPECT_EQ(compare_bytes(resized.pixels, expected.pixels), "identical");
  }
}

TEST(ImageResample, RefusesEmptyAndHugeResults) {
  RgbImage image;
  image.width = 2;
  image.height = 2;
  image.pixels.assign(12, 7);
  EXPECT_NE(
      test::error_of([&] { resize(image, 0, 4, ResampleFilter::Lanczos); }).find("cannot resize to 0x4"),
      std::string::npos);
  EXPECT_NE(test::error_of([&] {
              resize(image, 100000, 100000, ResampleFilter::Bicubic);
            }).find("the result must have 1 to 67108864 pixels"),
            std::string::npos);
  image.pixels.pop_back();
  EXPECT_NE(test::error_of([&] { resize(image, 4, 4, ResampleFilter::Bicubic); }).find("does not match"),
            std::string::npos);
}

TEST(ImageDecode, MatchesPillowForEveryFormat) {
  const WeightSource golden = test::open_golden("image/decode");
  const Json cases = test::golden_json("image/decode").at("cases");
  ASSERT_GE(cases.size(), 30u);
  for (const Json& entry : cases) {
    const std::string file = entry.at("file");
    SCOPED_TRACE(file);
    const DecodedImage image = read_image(decode_corpus(file));
    ASSERT_EQ(image.rgb.width, entry.at("width").get<int64_t>());
    ASSERT_EQ(image.rgb.height, entry.at("height").get<int64_t>());
    EXPECT_EQ(compare_bytes(image.rgb.pixels, golden_bytes(golden, entry.at("rgb"))), "identical");
    ASSERT_EQ(image.has_alpha(), !entry.at("alpha").is_null());
    if (image.has_alpha()) {
      EXPECT_EQ(compare_bytes(image.alpha, golden_bytes(golden, entry.at("alpha"))), "identical");
    }
  }
}

TEST(ImageDecode, NamesTheFormatFromTheBytesNotTheName) {
  EXPECT_EQ(read_image(decode_corpus("files/png_named_as.jpg")).format, ImageFormat::Png);
  EXPECT_EQ(read_image(decode_corpus("files/jpeg_422.jpg")).format, ImageFormat::Jpeg);
  EXPECT_EQ(read_image(decode_corpus("files/webp_lossy.webp")).format, ImageFormat::WebP);
}

TEST(ImageDecode, BytesInMemoryDecodeAsTheFile) {
  const std::filesystem::path path = decode_corpus("files/jpeg_420_orientation6.jpg");
  const DecodedImage from_file = read_image(path);
  const DecodedImage from_memory = decode_image(file_bytes(path), "upload.jpg");
  EXPECT_EQ(from_memory.rgb.width, from_file.rgb.width);
  EXPECT_EQ(from_memory.rgb.pixels, from_file.rgb.pixels);
}

const char* const kGoodFiles[] = {"files/png_rgba8.png",
                                  "files/png_rgb16.png",
                                  "files/png_palette8_trns.png",
                                  "files/png_rgba8_interlaced.png",
                                  "files/jpeg_420_orientation6.jpg",
                                  "files/jpeg_progressive.jpg",
                                  "files/jpeg_cmyk.jpg",
                                  "files/webp_lossless_alpha.webp",
                                  "files/webp_lossy_alpha.webp",
                                  "files/webp_animated.webp"};

TEST(ImageDecode, RefusesFilesCutInHalf) {
  for (const char* file : kGoodFiles) {
    SCOPED_TRACE(file);
    std::vector<uint8_t> bytes = file_bytes(decode_corpus(file));
    bytes.resize(bytes.size() / 2);
    const std::string message = test::error_of([&] { decode_image(bytes, "half.img"); });
    EXPECT_NE(message.find("cannot read half.img"), std::string::npos) << message;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  }
}

// Every cut of every length gives a picture or a canvas::Error: never a crash or another exception.
TEST(ImageDecode, SurvivesEveryTruncation) {
  for (const char* file : kGoodFiles) {
    SCOPED_TRACE(file);
    const std::vector<uint8_t> bytes = file_bytes(decode_corpus(file));
    int refused = 0;
    for (size_t length = 0; length < bytes.size(); ++length) {
      try {
        decode_image(std::span(bytes.data(), length), "cut.img");
      } catch (const Error&) {
        ++refused;
      }
    }
    // Only cuts in what follows the pixels (a PNG's IEND) may still decode, as they do in PIL.
    EXPECT_GE(refused, static_cast<int>(bytes.size()) - 12);
  }
}

// Random byte changes (a fixed seed): a picture or a canvas::Error, never a crash or another exception.
TEST(ImageDecode, SurvivesCorruptBytes) {
  std::mt19937 random(20260514);
  for (const char* file : kGoodFiles) {
    SCOPED_TRACE(file);
    const std::vector<uint8_t> original = file_bytes(decode_corpus(file));
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<uint8_t> bytes = original;
      const int changes = 1 + static_cast<int>(random() % 4);
      for (int i = 0; i < changes; ++i) bytes[random() % bytes.size()] = static_cast<uint8_t>(random());
      try {
        // A small limit: a header changed into a large size is refused instead of decoded slowly.
        decode_image(bytes, "corrupt.img", 1 << 16);
      } catch (const Error&) {
      }
    }
  }
}

TEST(ImageDecode, ExplainsCorruptData) {
  // A changed header fails its CRC; a broken deflate stream fails to inflate. (A changed IDAT CRC alone
  // passes, as in PIL, which does not check it: the pixels are whole.)
  std::vector<uint8_t> header = file_bytes(decode_corpus("files/png_rgb8.png"));
  header[24] = 4;  // IHDR's bit depth
  EXPECT_EQ(test::error_of([&] { decode_image(header, "crc.png"); }),
            "cannot read crc.png (PNG): IHDR: CRC error");
  std::vector<uint8_t> deflate = file_bytes(decode_corpus("files/png_rgb8.png"));
  deflate[41] = 0xff;  // the zlib header at the start of IDAT
  EXPECT_EQ(test::error_of([&] { decode_image(deflate, "zlib.png"); }),
            "cannot read zlib.png (PNG): IDAT: invalid window size (libpng)");

  std::vector<uint8_t> jpeg = file_bytes(decode_corpus("files/jpeg_422.jpg"));
  const uint8_t start_of_frame[] = {0xff, 0xc0};
  const size_t frame =
      std::search(jpeg.begin(), jpeg.end(), std::begin(start_of_frame), std::end(start_of_frame)) -
      jpeg.begin();
  jpeg[frame + 4] = 12;  // sample precision
  EXPECT_EQ(test::error_of([&] { decode_image(jpeg, "bits.jpg"); }),
            "cannot read bits.jpg (JPEG): Unsupported JPEG data precision 12");

  std::vector<uint8_t> webp = file_bytes(decode_corpus("files/webp_lossless.webp"));
  webp[20] = 0;  // the lossless bitstream's signature byte
  EXPECT_EQ(test::error_of([&] { decode_image(webp, "sig.webp"); }),
            "cannot read sig.webp (WebP): the data is corrupt");
}

TEST(ImageDecode, RefusesHugeHeadersBeforeAllocating) {
  const std::pair<const char*, const char*> files[] = {{"bad/huge_100000x100000.png", "100000x100000"},
                                                       {"bad/huge_65500x65500.jpg", "65500x65500"},
                                                       {"bad/huge_16384x16384.webp", "16384x16384"}};
  for (const auto& [file, size] : files) {
    const std::filesystem::path path = decode_corpus(file);
    EXPECT_EQ(test::error_of([&] { read_image(path); }),
              path.string() + " is " + size + " pixels, more than the 67108864 an input image may have");
  }
  EXPECT_EQ(
      test::error_of([&] { decode_image(file_bytes(decode_corpus("files/png_rgb8.png")), "a.png", 90); }),
      "a.png is 13x7 pixels, more than the 90 an input image may have");
}

TEST(ImageDecode, RefusesEmptyPictures) {
  EXPECT_EQ(test::error_of([&] { decode_image(file_bytes(decode_corpus("bad/zero_width.png")), "z.png"); }),
            "z.png has no pixels: its header says 0x5");
  EXPECT_EQ(test::error_of([&] { decode_image(file_bytes(decode_corpus("bad/zero_height.jpg")), "z.jpg"); }),
            "cannot read z.jpg (JPEG): Empty JPEG image (DNL not supported)");
  const std::filesystem::path empty = decode_corpus("bad/empty.webp");
  EXPECT_EQ(test::error_of([&] { read_image(empty); }), empty.string() + " is empty");
}

TEST(ImageDecode, RefusesWhatIsNotAnImage) {
  const std::filesystem::path text = decode_corpus("bad/text.png");
  EXPECT_EQ(test::error_of([&] { read_image(text); }), text.string() + " is not a PNG, JPEG or WebP image");
  const std::filesystem::path missing = decode_corpus("files/missing.png");
  EXPECT_EQ(test::error_of([&] { read_image(missing); }),
            "cannot open '" + missing.string() + "': No such file or directory");
  const std::filesystem::path folder = decode_corpus("files");
  EXPECT_EQ(test::error_of([&] { read_image(folder); }), folder.string() + " is a folder, not an image file");
}

TEST(ImageOrientation, ReadsTheExifTagAsPilDoes) {
  // Big-endian, one SHORT entry with value 6.
  const std::vector<uint8_t> big = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3,
                                    0,   0,   0, 1,  0, 6, 0, 0, 0, 0, 0,    0,    0, 0};
  EXPECT_EQ(exif_orientation(big), 6);
  // Little-endian LONG with value 8, behind a doubled "Exif\0\0" prefix.
  std::vector<uint8_t> little = {'E', 'x', 'i', 'f', 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  const std::vector<uint8_t> body = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 4,
                                     0,   1,   0,  0, 0, 8, 0, 0, 0, 0, 0,    0,    0};
  little.insert(little.end(), body.begin(), body.end());
  EXPECT_EQ(exif_orientation(little), 8);
  // Two values: PIL reads a tuple, which is no orientation.
  std::vector<uint8_t> pair = big;
  pair[17] = 2;
  EXPECT_EQ(exif_orientation(pair), std::nullopt);
  // Out-of-range values are present but do nothing.
  std::vector<uint8_t> nine = big;
  nine[19] = 9;
  EXPECT_EQ(exif_orientation(nine), 0);
  // Cut inside the entry, or not a TIFF header at all.
  EXPECT_EQ(exif_orientation(std::span(big).first(15)), std::nullopt);
  EXPECT_EQ(exif_orientation(std::vector<uint8_t>{'X', 'X', 0, 42, 0, 0, 0, 8}), std::nullopt);
  EXPECT_EQ(exif_orientation({}), std::nullopt);
}

TEST(ImageOrientation, ReadsXmpAsPilDoes) {
  EXPECT_EQ(xmp_orientation(R"(<rdf:Description tiff:Orientation="3"/>)"), 3);
  EXPECT_EQ(xmp_orientation("<tiff:Orientation>7</tiff:Orientation>"), 7);
  EXPECT_EQ(xmp_orientation(R"(tiff:Orientation="x" then tiff:Orientation>5)"), 5);
  EXPECT_EQ(xmp_orientation("exif:Orientation=\"6\""), std::nullopt);
}

}  // namespace
}  // namespace canvas
