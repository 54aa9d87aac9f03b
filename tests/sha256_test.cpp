#include "util/sha256.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace canvas {
namespace {

std::vector<uint8_t> bytes_of(const std::string& text) {
  return {text.begin(), text.end()};
}

// Digests from Python's hashlib.
TEST(Sha256, MatchesKnownDigests) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(bytes_of("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(bytes_of(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecesAndFilesGiveTheSameDigest) {
  std::vector<uint8_t> data;
  for (int copy = 0; copy < 3; ++copy)
    for (int value = 0; value < 256; ++value) data.push_back(static_cast<uint8_t>(value));
  const std::string expected = "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363";
  Sha256 pieces;
  for (size_t offset = 0; offset < data.size(); offset += 7)
    pieces.update({data.data() + offset, std::min<size_t>(7, data.size() - offset)});
  const std::array<uint8_t, 32> digest = pieces.finish();
  EXPECT_EQ(sha256_hex(data), expected);
  EXPECT_EQ(digest[0], 0xf3);
  const std::filesystem::path file = test::scratch_dir("sha256") / "data.bin";
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
  EXPECT_EQ(sha256_file_hex(file), expected);
  test::expect_contains(test::error_of([&] { sha256_file_hex(file.parent_path() / "missing"); }),
                        "cannot read");
}

}  // namespace
}  // namespace canvas
