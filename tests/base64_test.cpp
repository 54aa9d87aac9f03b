// Base64 as RFC 4648 defines it, and the malformed text the decoder refuses.
#include "util/base64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace canvas {
namespace {

std::vector<uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

// RFC 4648 section 10.
struct TestVector {
  std::string_view bytes;
  std::string_view padded;
  std::string_view unpadded;
};
constexpr TestVector kRfc4648Vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

TEST(Base64, EncodesTheRfc4648TestVectors) {
  for (const TestVector& vector : kRfc4648Vectors)
    EXPECT_EQ(base64_encode(bytes_of(vector.bytes)), vector.padded) << vector.bytes;
}

TEST(Base64, DecodesTheRfc4648TestVectorsPaddedOrNot) {
  for (const TestVector& vector : kRfc4648Vectors) {
    EXPECT_EQ(base64_decode(vector.padded), bytes_of(vector.bytes)) << vector.padded;
    EXPECT_EQ(base64_decode(vector.unpadded), bytes_of(vector.bytes)) << vector.unpadded;
  }
}

TEST(Base64, UsesTheWholeStandardAlphabet) {
  // 0x00 0x10 0x83 ... : every 6-bit value once, in order.
  std::vector<uint8_t> bytes;
  for (uint32_t value = 0; value < 64; value += 4) {
    const uint32_t group = value << 18 | (value + 1) << 12 | (value + 2) << 6 | (value + 3);
    bytes.insert(bytes.end(), {static_cast<uint8_t>(group >> 16), static_cast<uint8_t>(group >> 8),
                               static_cast<uint8_t>(group)});
  }
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  EXPECT_EQ(base64_encode(bytes), alphabet);
  EXPECT_EQ(base64_decode(alphabet), bytes);
}

TEST(Base64, RoundTripsEveryLengthAndByte) {
  std::vector<uint8_t> bytes;
  uint32_t state = 7;
  for (int length = 0; length <= 300; ++length) {
    const std::string text = base64_encode(bytes);
    EXPECT_EQ(text.size(), (bytes.size() + 2) / 3 * 4);
    EXPECT_EQ(base64_decode(text), bytes) << "length " << length;
    bytes.push_back(static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24));
  }
}

TEST(Base64, RefusesMalformedText) {
  for (std::string_view malformed : {
           "Zm9v YmFy",     // whitespace
           "Zm9vYmFy\n",    // a line break
           "Zm9v\r\nYmFy",  // a line break inside
           "Zm9vYm-y",      // the URL-safe alphabet
           "Zm9vYm_y",
           "Zm9vYmF*",  // outside any alphabet
           "Z",         // one character holds no byte
           "Zm9vY",
           "Zm9vY===",  // too much padding
           "Zg=",       // padding that does not complete the group
           "Zm8==",
           "=",
           "==",
           "====",
           "Zg==Zg==",  // padding in the middle
           "Zm=v",
           "Zh==",  // nonzero bits after the last byte
           "Zm9=",
           "Zh",
       }) {
    EXPECT_EQ(base64_decode(malformed), std::nullopt) << malformed;
  }
  EXPECT_EQ(base64_decode(std::string_view("Zm9v\0Zm9v", 9)), std::nullopt);  // a NUL
  EXPECT_EQ(base64_decode("Zm9vYg\xff"), std::nullopt);                       // a non-ASCII byte
}

}  // namespace
}  // namespace canvas
