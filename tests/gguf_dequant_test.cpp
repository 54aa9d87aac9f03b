// GGML block dequantization against gguf-py's gguf.quants.dequantize (tests/golden/gguf/dequant, written by
// tools/reference/make_gguf_goldens.py): bit for bit on every type.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>

#include "tensor/ggml_dequantize.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

struct NamedType {
  const char* name;  // as gguf-py names it
  DType dtype;
};

constexpr NamedType kTypes[] = {
    {"Q4_0", DType::Q4_0}, {"Q4_1", DType::Q4_1}, {"Q5_0", DType::Q5_0},     {"Q5_1", DType::Q5_1},
    {"Q8_0", DType::Q8_0}, {"Q2_K", DType::Q2_K}, {"Q3_K", DType::Q3_K},     {"Q4_K", DType::Q4_K},
    {"Q5_K", DType::Q5_K}, {"Q6_K", DType::Q6_K}, {"IQ4_NL", DType::IQ4_NL}, {"IQ4_XS", DType::IQ4_XS},
};

TEST(GgufDequant, MatchesGgufPyBitForBitOnEveryType) {
  const WeightSource golden = test::open_golden("gguf/dequant");
  for (const NamedType& type : kTypes) {
    SCOPED_TRACE(type.name);
    const Tensor blocks = golden.get(std::string(type.name) + ".blocks");
    const std::vector<float> expected = golden.get(std::string(type.name) + ".values").to_floats();
    ASSERT_EQ(blocks.dtype(), DType::U8);
    ASSERT_EQ(storage_bytes(type.dtype, static_cast<int64_t>(expected.size())), blocks.numel());

    std::vector<float> actual(expected.size());
    dequantize_ggml_blocks(type.dtype, static_cast<const std::byte*>(blocks.raw_data()), actual.data(),
                           static_cast<int64_t>(actual.size()));
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(actual[i]), std::bit_cast<uint32_t>(expected[i]))
          << "element " << i << ": " << actual[i] << " vs " << expected[i];
    }

    // The tensor-level path, over a 2-D view of the same blocks.
    const int64_t block_elements = dtype_info(type.dtype).block_elements;
    const int64_t rows = static_cast<int64_t>(expected.size()) / block_elements;
    const Tensor quantized =
        Tensor::from_buffer(blocks.buffer(), {rows, block_elements}, type.dtype, blocks.byte_offset());
    const Tensor widened = dequantize_ggml(quantized);
    EXPECT_EQ(widened.shape(), (Shape{rows, block_elements}));
    EXPECT_EQ(widened.dtype(), DType::F32);
    EXPECT_EQ(std::memcmp(widened.raw_data(), expected.data(), expected.size() * sizeof(float)), 0);
  }
}

TEST(GgufDequant, RejectsOtherTypesAndPartialBlocks) {
  std::vector<std::byte> bytes(256);
  std::vector<float> values(256);
  EXPECT_FALSE(is_ggml_block_type(DType::NF4));
  EXPECT_TRUE(is_ggml_block_type(DType::IQ4_XS));
  test::expect_contains(
      test::error_of([&] { dequantize_ggml_blocks(DType::F16, bytes.data(), values.data(), 8); }),
      "not a GGML block type");
  test::expect_contains(
      test::error_of([&] { dequantize_ggml_blocks(DType::Q4_0, bytes.data(), values.data(), 40); }),
      "not a whole number of q4_0 blocks");
}

}  // namespace
}  // namespace canvas
