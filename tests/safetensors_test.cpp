#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string length_prefix(uint64_t length) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(length >> (8 * i));
  return bytes;
}

// A hand-made file: the header text as given, then `data_bytes` zero bytes.
fs::path write_raw(const fs::path& dir, const std::string& header, size_t data_bytes) {
  fs::path path = dir / "raw.safetensors";
  write_bytes(path, length_prefix(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

// A tensor whose bytes count up, so every byte position is distinguishable after a round trip.
Tensor patterned(const Shape& shape, DType dtype, int seed) {
  Tensor tensor = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<unsigned char*>(tensor.raw_data());
  for (int64_t i = 0; i < tensor.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + seed);
  return tensor;
}

std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  return {{"weight", patterned({4, 3}, DType::F32, 1)}, {"bias", patterned({3}, DType::BF16, 2)}};
}

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  const fs::path dir = test::scratch_dir("safetensors_round_trip");
  const std::vector<DType> dtypes = {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2,
                                     DType::F64, DType::I64, DType::I32,  DType::U8,      DType::Bool};
  std::vector<std::pair<std::string, Tensor>> written;
  for (size_t i = 0; i < dtypes.size(); ++i) {
    written.emplace_back("tensor_" + std::string(dtype_name(dtypes[i])),
                         patterned({2, 3, 5}, dtypes[i], int(i)));
  }
  written.emplace_back("scalar", patterned({}, DType::F32, 9));
  written.emplace_back("empty", patterned({0, 4}, DType::F16, 0));
  const fs::path path = dir / "all.safetensors";
  write_safetensors(path, written, {{"format", "pt"}, {"note", "round trip"}});

  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "round trip");
  ASSERT_EQ(file.tensors().size(), written.size());
  for (const auto& [name, expected] : written) {
    SCOPED_TRACE(name);
    const Tensor read = file.tensor(name);
    EXPECT_EQ(read.dtype(), expected.dtype());
    EXPECT_EQ(read.shape(), expected.shape());
    ASSERT_EQ(read.nbytes(), expected.nbytes());
    EXPECT_EQ(std::memcmp(read.raw_data(), expected.raw_data(), static_cast<size_t>(read.nbytes())), 0);
  }
}

TEST(SafetensorsTest, DtypeNamesFollowTheFormat) {
  EXPECT_EQ(safetensors_dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(safetensors_dtype_name(DType::F8_E4M3), "F8_E4M3");
  EXPECT_EQ(safetensors_dtype_name(DType::Bool), "BOOL");
  test::expect_contains(test::error_of([] { safetensors_dtype_name(DType::Q8_0); }), "q8_0");
}

TEST(SafetensorsTest, TensorsAreZeroCopyViewsThatKeepTheMappingAlive) {
  const fs::path path = test::scratch_dir("safetensors_zero_copy") / "model.safetensors";
  write_safetensors(path, sample_tensors());
  Tensor weight;
  {
    const SafetensorsFile file = SafetensorsFile::open(path);
    weight = file.tensor("weight");
    const auto* mapping_begin = static_cast<const char*>(weight.buffer()->data()) - file.data_offset();
    const auto* pointer = static_cast<const char*>(weight.raw_data());
    EXPECT_GE(pointer, mapping_begin + file.data_offset());
    EXPECT_LE(pointer + weight.nbytes(), mapping_begin + fs::file_size(path));
    EXPECT_FALSE(weight.buffer()->writable());
    EXPECT_EQ(file.tensor("bias").buffer(), weight.buffer());
  }
  // The file object is gone; the view must still read the mapped bytes.
  const Tensor expected = patterned({4, 3}, DType::F32, 1);
  EXPECT_EQ(std::memcmp(weight.raw_data(), expected.raw_data(), 48), 0);
}

TEST(SafetensorsTest, WriterAlignsEveryTensorToItsElementSize) {
  const fs::path path = test::scratch_dir("safetensors_alignment") / "mixed.safetensors";
  write_safetensors(path, {{"a_byte", patterned({3}, DType::U8, 0)},
                           {"b_half", patterned({3}, DType::F16, 0)},
                           {"c_long", patterned({3}, DType::I64, 0)},
                           {"d_float", patterned({1}, DType::F32, 0)}});
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.data_offset() % 8, 0);
  for (const SafetensorsTensorInfo& info : file.tensors()) {
    EXPECT_EQ(info.data_begin % element_size(info.dtype), 0) << info.name;
  }
}

TEST(SafetensorsTest, WriterLeavesNoPartialFile) {
  const fs::path dir = test::scratch_dir("safetensors_atomic");
  const fs::path path = dir / "out.safetensors";
  write_safetensors(path, sample_tensors());
  const std::string before = read_bytes(path);

  Tensor quantized = Tensor::empty({64}, DType::NF4);
  test::expect_contains(test::error_of([&] { write_safetensors(path, {{"q", quantized}}); }), "nf4");
  test::expect_contains(test::error_of([&] {
                          write_safetensors(path, {{"x", quantized}, {"x", quantized}});
                        }),
                        "'x'");
  test::expect_contains(
      test::error_of([&] { write_safetensors(dir / "missing" / "out.safetensors", sample_tensors()); }),
      "missing");
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(SafetensorsTest, TruncatedFilesNameTheFile) {
  const fs::path dir = test::scratch_dir("safetensors_truncated");
  const fs::path good = dir / "good.safetensors";
  write_safetensors(good, sample_tensors());
  const std::string bytes = read_bytes(good);
  const int64_t data_offset = SafetensorsFile::open(good).data_offset();
  const size_t cuts[] = {0,
                         3,
                         7,
                         8,
                         static_cast<size_t>(data_offset / 2),
                         static_cast<size_t>(data_offset + 1),
                         bytes.size() - 1};
  for (size_t cut : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const fs::path path = dir / ("cut" + std::to_string(cut) + ".safetensors");
    write_bytes(path, bytes.substr(0, cut));
    const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
    test::expect_contains(message, path.string());
    // A cut inside the data names the tensor that lost bytes.
    if (static_cast<int64_t>(cut) > data_offset) test::expect_contains(message, "tensor '");
  }
}

TEST(SafetensorsTest, RejectsHeaderLengthBeyondTheFile) {
  const fs::path dir = test::scratch_dir("safetensors_header_length");
  const fs::path path = dir / "long.safetensors";
  write_bytes(path, length_prefix(1000) + "{}");
  const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
  test::expect_contains(message, path.string());
  test::expect_contains(message, "1000");

  write_bytes(path, length_prefix(uint64_t{1} << 62) + "{}");
  test::expect_contains(test::error_of([&] { SafetensorsFile::open(path); }), "100 MB");
}

TEST(SafetensorsTest, RejectsMalformedJson) {
  const fs::path dir = test::scratch_dir("safetensors_garbage");
  for (const std::string header :
       {"{\"a\": {\"dtype\": \"F32\",", "\xff\xfe garbage", "[1, 2, 3]", "{\"a\": 5}"}) {
    const fs::path path = write_raw(dir, header, 0);
    test::expect_contains(test::error_of([&] { SafetensorsFile::open(path); }), path.string());
  }
}

TEST(SafetensorsTest, RejectsUnknownDtype) {
  const fs::path dir = test::scratch_dir("safetensors_dtype");
  const fs::path path = write_raw(dir, R"({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})", 8);
  const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
  test::expect_contains(message, path.string());
  test::expect_contains(message, "tensor 'w'");
  test::expect_contains(message, "C64");
}

TEST(SafetensorsTest, RejectsByteLengthMismatch) {
  const fs::path dir = test::scratch_dir("safetensors_length_mismatch");
  const fs::path path =
      write_raw(dir, R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 10]}})", 10);
  const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
  test::expect_contains(message, "tensor 'w'");
  test::expect_contains(message, "needs 12");
}

TEST(SafetensorsTest, RejectsOverlappingTensors) {
  const fs::path dir = test::scratch_dir("safetensors_overlap");
  const fs::path path = write_raw(dir,
                                  R"({"first": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                      "second": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                                  16);
  const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
  test::expect_contains(message, path.string());
  test::expect_contains(message, "'first'");
  test::expect_contains(message, "'second'");
}

TEST(SafetensorsTest, RejectsBadOffsets) {
  const fs::path dir = test::scratch_dir("safetensors_offsets");
  const std::string cases[] = {
      R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",     // beyond a 4-byte data section
      R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}})",     // begin after end
      R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})",    // negative
      R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",        // one number
      R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})",  // three numbers
      R"({"w": {"dtype": "F32", "shape": [1]}})",                             // none
  };
  for (const std::string& header : cases) {
    SCOPED_TRACE(header);
    const fs::path path = write_raw(dir, header, 4);
    const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
    test::expect_contains(message, path.string());
    test::expect_contains(message, "tensor 'w'");
  }
}

TEST(SafetensorsTest, RejectsBadShapes) {
  const fs::path dir = test::scratch_dir("safetensors_shapes");
  const std::string cases[] = {
      R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
      R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})",
      R"({"w": {"dtype": "F32", "shape": "[1]", "data_offsets": [0, 4]}})",
      // Products that overflow int64, also when a zero extent comes last.
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 4]}})",
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})",
      R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})",
      // Elements fit but bytes do not.
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})",
  };
  for (const std::string& header : cases) {
    SCOPED_TRACE(header);
    const fs::path path = write_raw(dir, header, 4);
    const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
    test::expect_contains(message, path.string());
    test::expect_contains(message, "tensor 'w'");
  }
}

TEST(SafetensorsTest, RejectsDuplicateNames) {
  const fs::path dir = test::scratch_dir("safetensors_duplicates");
  const fs::path path = write_raw(dir,
                                  R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                      "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                                  2);
  const std::string message = test::error_of([&] { SafetensorsFile::open(path); });
  test::expect_contains(message, "tensor 'w'");
  test::expect_contains(message, "twice");
}

TEST(SafetensorsTest, RejectsNonStringMetadata) {
  const fs::path dir = test::scratch_dir("safetensors_metadata");
  const fs::path path = write_raw(dir, R"({"__metadata__": {"epoch": 3}})", 0);
  test::expect_contains(test::error_of([&] { SafetensorsFile::open(path); }), "epoch");
}

TEST(SafetensorsTest, ReportsUnopenableFiles) {
  const fs::path dir = test::scratch_dir("safetensors_unopenable");
  const std::string missing = test::error_of([&] { SafetensorsFile::open(dir / "absent.safetensors"); });
  test::expect_contains(missing, "absent.safetensors");
  test::expect_contains(missing, std::strerror(ENOENT));
  test::expect_contains(test::error_of([&] { SafetensorsFile::open(dir); }), "not a regular file");
  write_bytes(dir / "empty.safetensors", "");
  test::expect_contains(test::error_of([&] { SafetensorsFile::open(dir / "empty.safetensors"); }),
                        "too short");
}

TEST(SafetensorsTest, LookupOfAnAbsentTensorNamesIt) {
  const fs::path path = test::scratch_dir("safetensors_lookup") / "model.safetensors";
  write_safetensors(path, sample_tensors());
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_TRUE(file.contains("bias"));
  EXPECT_FALSE(file.contains("bia"));
  const std::string message = test::error_of([&] { file.tensor("gamma"); });
  test::expect_contains(message, "'gamma'");
  test::expect_contains(message, "(2 tensors)");
}

// Random damage to a valid file must only ever produce canvas::Error or a file that reads consistently.
TEST(SafetensorsTest, SurvivesRandomCorruption) {
  const fs::path dir = test::scratch_dir("safetensors_fuzz");
  const fs::path good = dir / "good.safetensors";
  write_safetensors(good, sample_tensors(), {{"format", "pt"}});
  const std::string bytes = read_bytes(good);
  const size_t header_end = static_cast<size_t>(SafetensorsFile::open(good).data_offset());
  std::mt19937 random(1234);
  int rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string damaged = bytes;
    const int flips = 1 + static_cast<int>(random() % 3);
    for (int flip = 0; flip < flips; ++flip) {
      damaged[random() % header_end] = static_cast<char>(random());
    }
    if (trial % 4 == 0) damaged.resize(random() % damaged.size());
    const fs::path path = dir / "damaged.safetensors";
    write_bytes(path, damaged);
    try {
      const SafetensorsFile file = SafetensorsFile::open(path);
      for (const SafetensorsTensorInfo& info : file.tensors()) {
        const Tensor tensor = file.tensor(info);
        EXPECT_LE(info.data_end + file.data_offset(), static_cast<int64_t>(damaged.size()));
        EXPECT_EQ(tensor.nbytes(), info.bytes());
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
}

}  // namespace
}  // namespace canvas
