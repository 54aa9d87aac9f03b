#include "io/npy.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "test_util.h"

namespace canvas {
namespace {

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Byte for byte what numpy.save writes for np.arange(6, dtype=np.float32).reshape(1, 2, 3) * 0.5.
TEST(Npy, WritesWhatNumpyWrites) {
  const std::filesystem::path path = test::scratch_dir("npy") / "latents.npy";
  write_npy(path, Tensor::from_floats(std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}, {1, 2, 3}));
  const std::string bytes = file_bytes(path);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }";
  header.append(117 - header.size(), ' ');
  header += '\n';
  const std::string expected_start = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header;
  ASSERT_EQ(bytes.size(), 128u + 6 * sizeof(float));
  EXPECT_EQ(bytes.substr(0, 128), expected_start);
  float values[6];
  std::memcpy(values, bytes.data() + 128, sizeof(values));
  EXPECT_EQ(values[5], 2.5f);
}

TEST(Npy, OneAxisShapesKeepTheTupleComma) {
  const std::filesystem::path path = test::scratch_dir("npy_1d") / "one.npy";
  write_npy(path, Tensor::from_floats(std::vector<float>{1.5f}, {1}));
  test::expect_contains(file_bytes(path), "'shape': (1,), }");
}

TEST(Npy, AFailedWriteLeavesNoFile) {
  const std::filesystem::path folder = test::scratch_dir("npy_missing") / "absent";
  test::expect_contains(
      test::error_of([&] { write_npy(folder / "x.npy", Tensor::from_floats(std::vector<float>{1}, {1})); }),
      "x.npy");
  EXPECT_FALSE(std::filesystem::exists(folder / "x.npy"));
}

}  // namespace
}  // namespace canvas
