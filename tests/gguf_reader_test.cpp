// The GGUF reader: gguf-py's files (tests/golden/gguf), hand-built files for every metadata type, shape
// reversal and ComfyUI's orig_shape, and every kind of damage giving canvas::Error naming the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <fstream>
#include <random>

#include "io/gguf.h"
#include "io/weight_source.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kTypeF32 = 0, kTypeQ8_0 = 8, kTypeIq2Xxs = 16;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Little-endian encoders for hand-built files.
std::string u32(uint32_t value) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return bytes;
}
std::string u64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return bytes;
}
std::string str(const std::string& text) {
  return u64(text.size()) + text;
}
std::string f32(float value) {
  return u32(std::bit_cast<uint32_t>(value));
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;  // innermost first, as GGUF lists them
  uint32_t type = kTypeF32;
  uint64_t offset = 0;
};

std::string tensor_info(const TensorSpec& spec) {
  std::string bytes = str(spec.name) + u32(static_cast<uint32_t>(spec.dims.size()));
  for (uint64_t dim : spec.dims) bytes += u64(dim);
  return bytes + u32(spec.type) + u64(spec.offset);
}

// A whole file: header, the given encoded key/values, tensor infos, padding to `alignment`, then `data`.
std::string gguf_file(const std::vector<std::string>& key_values, const std::vector<TensorSpec>& tensors,
                      const std::string& data, size_t alignment = 32, uint32_t version = 3) {
  std::string bytes = "GGUF" + u32(version) + u64(tensors.size()) + u64(key_values.size());
  for (const std::string& key_value : key_values) bytes += key_value;
  for (const TensorSpec& tensor : tensors) bytes += tensor_info(tensor);
  bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, '\0');
  return bytes + data;
}

std::string architecture() {
  return str("general.architecture") + u32(8) + str("qwen_image");
}

// Two f32 tensors: "w" of torch shape [2, 3, 4] (GGUF dims 4, 3, 2) and "b" of shape [4], values counting up.
std::string sample_file() {
  std::string data;
  for (int i = 0; i < 24; ++i) data += f32(static_cast<float>(i));
  data.resize(128, '\0');
  for (int i = 0; i < 4; ++i) data += f32(static_cast<float>(100 + i));
  return gguf_file({architecture()}, {{"w", {4, 3, 2}, kTypeF32, 0}, {"b", {4}, kTypeF32, 128}}, data);
}

fs::path write_file(const std::string& test, const std::string& bytes) {
  const fs::path path = test::scratch_dir(test) / "model.gguf";
  write_bytes(path, bytes);
  return path;
}

std::string open_error(const std::string& test, const std::string& bytes) {
  const fs::path path = write_file(test, bytes);
  const std::string message = test::error_of([&] { GgufFile::open(path); });
  test::expect_contains(message, path.string());
  return message;
}

TEST(GgufReader, ReadsGgufPyFilesInTorchShapes) {
  const fs::path path = test::source_path("tests/golden/gguf/tiny/tiny-qwen-image-q8_0.gguf");
  const GgufFile file = GgufFile::open(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32);
  EXPECT_EQ(file.metadata_string("general.architecture"), "qwen_image");
  const WeightSource reference = WeightSource::open(
      test::source_path("models/tiny-qwen-image/transformer/diffusion_pytorch_model.safetensors"));
  ASSERT_EQ(file.tensors().size(), reference.size());
  const WeightSource gguf = WeightSource::open(path);
  const double expected_error =
      test::golden_json("gguf/tiny")["tiny-qwen-image-q8_0.gguf"]["max_weight_error"];
  double worst = 0;
  for (const GgufTensorInfo& info : file.tensors()) {
    SCOPED_TRACE(info.name);
    EXPECT_EQ(info.shape, reference.info(info.name).shape);
    EXPECT_EQ(info.dtype, info.shape.size() == 1 ? DType::F32 : DType::Q8_0);
    // The source reports the stored type and bytes (what the file costs) and hands out f32.
    EXPECT_EQ(gguf.dtype(info.name), info.dtype);
    EXPECT_EQ(gguf.info(info.name).bytes(), storage_bytes(info.dtype, shape_numel(info.shape)));
    const Tensor loaded = gguf.get(info.name, reference.info(info.name).shape);
    EXPECT_EQ(loaded.dtype(), DType::F32);
    if (info.dtype == DType::F32) {
      EXPECT_TRUE(test::bit_identical(loaded, reference.get(info.name)));
    }
    worst = std::max(worst, test::max_abs_difference(loaded, reference.get(info.name)));
  }
  EXPECT_FLOAT_EQ(static_cast<float>(worst), static_cast<float>(expected_error));
}

TEST(GgufReader, ReadsEveryMetadataTypeAndReversesDims) {
  const std::vector<std::string> key_values = {
      architecture(),
      str("u8") + u32(0) + "\x07",
      str("i8") + u32(1) + "\xfe",
      str("u16") + u32(2) + u32(0xbeef).substr(0, 2),
      str("i32") + u32(5) + u32(static_cast<uint32_t>(-5)),
      str("f32") + u32(6) + f32(1.5f),
      str("bool") + u32(7) + "\x01",
      str("u64") + u32(10) + u64(1ull << 40),
      str("f64") + u32(12) + u64(std::bit_cast<uint64_t>(0.25)),
      str("names") + u32(9) + u32(8) + u64(2) + str("a") + str("bc"),
      str("general.alignment") + u32(4) + u32(64),
  };
  std::string data;
  for (int i = 0; i < 6; ++i) data += f32(static_cast<float>(i));
  const fs::path path = write_file("gguf_metadata", gguf_file(key_values, {{"x", {3, 2}}}, data, 64, 2));
  const GgufFile file = GgufFile::open(path);
  EXPECT_EQ(file.version(), 2u);
  EXPECT_EQ(file.alignment(), 64);
  EXPECT_EQ(file.data_offset() % 64, 0);
  EXPECT_EQ(file.find_metadata("u8")->integer, 7);
  EXPECT_EQ(file.find_metadata("i8")->integer, -2);
  EXPECT_EQ(file.find_metadata("u16")->integer, 0xbeef);
  EXPECT_EQ(file.find_metadata("i32")->integer, -5);
  EXPECT_EQ(file.find_metadata("f32")->real, 1.5);
  EXPECT_EQ(file.find_metadata("bool")->integer, 1);
  EXPECT_EQ(file.find_metadata("u64")->integer, int64_t{1} << 40);
  EXPECT_EQ(file.find_metadata("f64")->real, 0.25);
  EXPECT_EQ(file.find_metadata("names")->strings, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(file.find_metadata("absent"), nullptr);
  test::expect_contains(test::error_of([&] { file.metadata_string("u8"); }), "is not a string");
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.tensors()[0].shape, (Shape{2, 3}));
  EXPECT_EQ(file.tensor(file.tensors()[0]).to_floats(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(GgufReader, AppliesComfyUiOrigShapes) {
  const std::string orig_shape =
      str("comfy.gguf.orig_shape.w") + u32(9) + u32(5) + u64(3) + u32(2) + u32(2) + u32(6);
  std::string data;
  for (int i = 0; i < 24; ++i) data += f32(static_cast<float>(i));
  const fs::path path =
      write_file("gguf_orig_shape", gguf_file({architecture(), orig_shape}, {{"w", {8, 3}}}, data));
  EXPECT_EQ(GgufFile::open(path).tensors()[0].shape, (Shape{2, 2, 6}));

  const std::string wrong = str("comfy.gguf.orig_shape.w") + u32(9) + u32(5) + u64(2) + u32(5) + u32(5);
  test::expect_contains(
      open_error("gguf_orig_shape_bad", gguf_file({architecture(), wrong}, {{"w", {8, 3}}}, data)),
      "does not hold the 24 stored elements");
}

TEST(GgufReader, TruncationAnywhereIsAnError) {
  const std::string bytes = sample_file();
  const fs::path path = test::scratch_dir("gguf_truncated") / "cut.gguf";
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    write_bytes(path, bytes.substr(0, cut));
    EXPECT_THROW(GgufFile::open(path), Error) << "cut at " << cut;
  }
  write_bytes(path, bytes);
  const GgufFile file = GgufFile::open(path);
  EXPECT_EQ(file.tensors()[0].shape, (Shape{2, 3, 4}));
  EXPECT_EQ(file.tensor(file.tensors()[1]).to_floats(), (std::vector<float>{100, 101, 102, 103}));
}

TEST(GgufReader, RejectsMalformedHeaders) {
  const std::string good = sample_file();
  auto with = [&](size_t at, const std::string& replacement) {
    return good.substr(0, at) + replacement + good.substr(at + replacement.size());
  };
  test::expect_contains(open_error("gguf_magic", with(0, "GGML")), "magic");
  test::expect_contains(open_error("gguf_v1", with(4, u32(1))), "version 1 is not supported");
  test::expect_contains(open_error("gguf_v9", with(4, u32(9))), "unknown GGUF version 9");
  test::expect_contains(open_error("gguf_big_endian", with(4, std::string("\0\0\0\3", 4))), "big-endian");
  test::expect_contains(open_error("gguf_tensor_count", with(8, u64(1ull << 60))), "tensor count");
  test::expect_contains(open_error("gguf_kv_count", with(16, u64(~0ull))), "metadata count");
  test::expect_contains(open_error("gguf_key_length", with(24, u64(1ull << 62))), "metadata key length");
}

TEST(GgufReader, RejectsBadMetadata) {
  const std::vector<TensorSpec> none;
  test::expect_contains(open_error("gguf_value_type", gguf_file({str("k") + u32(13) + u32(0)}, none, "")),
                        "unknown value type 13");
  test::expect_contains(
      open_error("gguf_nested", gguf_file({str("k") + u32(9) + u32(9) + u64(1) + u32(0) + u64(0)}, none, "")),
      "nests an array");
  test::expect_contains(
      open_error("gguf_array_length", gguf_file({str("k") + u32(9) + u32(6) + u64(1ull << 61)}, none, "")),
      "array length");
  test::expect_contains(
      open_error("gguf_string_length", gguf_file({str("k") + u32(8) + u64(1000) + "ab"}, none, "")),
      "length");
  test::expect_contains(open_error("gguf_bool", gguf_file({str("k") + u32(7) + "\x02"}, none, "")), "bool");
  test::expect_contains(
      open_error("gguf_duplicate_key", gguf_file({architecture(), architecture()}, none, "")),
      "appears twice");
  test::expect_contains(
      open_error("gguf_alignment", gguf_file({str("general.alignment") + u32(4) + u32(24)}, none, "")),
      "not a power of two");
  test::expect_contains(
      open_error("gguf_alignment_type", gguf_file({str("general.alignment") + u32(10) + u64(32)}, none, "")),
      "not a uint32");
}

TEST(GgufReader, RejectsBadTensorInfosNamingTheTensor) {
  const std::string data(4096, '\0');
  auto error_for = [&](const std::string& test, const std::vector<TensorSpec>& tensors) {
    const std::string message = open_error(test, gguf_file({architecture()}, tensors, data));
    test::expect_contains(message, "tensor '");
    return message;
  };
  test::expect_contains(error_for("gguf_no_dims", {{"t", {}}}), "0 dims");
  test::expect_contains(error_for("gguf_five_dims", {{"t", {1, 1, 1, 1, 1}}}), "5 dims");
  test::expect_contains(error_for("gguf_overflow", {{"t", {1ull << 40, 1ull << 40}}}), "overflow");
  test::expect_contains(error_for("gguf_huge_dim", {{"t", {~0ull}}}), "overflow");
  test::expect_contains(error_for("gguf_unknown_type", {{"t", {4}, 99}}), "unknown GGML type 99");
  test::expect_contains(error_for("gguf_unsupported_type", {{"t", {256}, kTypeIq2Xxs}}),
                        "IQ2_XXS is not supported");
  test::expect_contains(error_for("gguf_partial_block", {{"t", {40}, kTypeQ8_0}}),
                        "not a multiple of the Q8_0 block");
  test::expect_contains(error_for("gguf_unaligned", {{"t", {4}, kTypeF32, 16}}),
                        "not a multiple of the alignment");
  test::expect_contains(error_for("gguf_past_end", {{"t", {2048}}}), "run past");
  test::expect_contains(error_for("gguf_huge_offset", {{"t", {4}, kTypeF32, 1ull << 63}}), "past any file");
  test::expect_contains(error_for("gguf_overlap", {{"a", {16}}, {"b", {16}, kTypeF32, 32}}),
                        "overlaps tensor 'a'");
  test::expect_contains(error_for("gguf_duplicate", {{"a", {4}}, {"a", {4}, kTypeF32, 32}}), "appears twice");
}

TEST(GgufReader, SurvivesRandomCorruption) {
  const std::string bytes = sample_file();
  const fs::path path = test::scratch_dir("gguf_fuzz") / "damaged.gguf";
  const size_t header_end =
      static_cast<size_t>(GgufFile::open(write_file("gguf_fuzz_good", bytes)).data_offset());
  std::mt19937 random(1919);
  int rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string damaged = bytes;
    const int flips = 1 + static_cast<int>(random() % 3);
    for (int flip = 0; flip < flips; ++flip) damaged[random() % header_end] = static_cast<char>(random());
    if (trial % 4 == 0) damaged.resize(random() % damaged.size());
    write_bytes(path, damaged);
    try {
      const GgufFile file = GgufFile::open(path);
      for (const GgufTensorInfo& info : file.tensors()) {
        EXPECT_LE(info.data_end + file.data_offset(), static_cast<int64_t>(damaged.size()));
        EXPECT_EQ(file.tensor(info).nbytes(), info.bytes());
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
}

}  // namespace
}  // namespace canvas
