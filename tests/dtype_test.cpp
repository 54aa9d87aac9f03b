// Scalar and bulk dtype conversions: known encodings, subnormals, round-to-nearest-even and NaN handling.
#include "tensor/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "util/error.h"

namespace canvas {
namespace {

TEST(DType, InfoAndStorageBytes) {
  EXPECT_EQ(dtype_name(DType::BF16), "bf16");
  EXPECT_EQ(element_size(DType::F32), 4);
  EXPECT_EQ(element_size(DType::F8_E5M2), 1);
  EXPECT_EQ(element_size(DType::I64), 8);
  EXPECT_TRUE(is_float(DType::F8_E4M3));
  EXPECT_FALSE(is_float(DType::Bool));
  EXPECT_TRUE(is_block_quantized(DType::Q4_K));
  EXPECT_FALSE(is_block_quantized(DType::F16));
  EXPECT_EQ(storage_bytes(DType::F32, 10), 40);
  EXPECT_EQ(storage_bytes(DType::NF4, 128), 64);
  EXPECT_EQ(storage_bytes(DType::Q8_0, 64), 68);
  EXPECT_EQ(storage_bytes(DType::Q4_K, 512), 288);
  EXPECT_THROW(storage_bytes(DType::NF4, 101), Error);
  EXPECT_THROW(element_size(DType::Q8_0), Error);
}

TEST(DType, SafetensorsNames) {
  DType parsed = DType::F32;
  EXPECT_TRUE(dtype_from_safetensors("BF16", parsed));
  EXPECT_EQ(parsed, DType::BF16);
  EXPECT_TRUE(dtype_from_safetensors("F8_E4M3", parsed));
  EXPECT_EQ(parsed, DType::F8_E4M3);
  EXPECT_TRUE(dtype_from_safetensors("BOOL", parsed));
  EXPECT_EQ(parsed, DType::Bool);
  EXPECT_TRUE(dtype_from_safetensors("F64", parsed));
  EXPECT_EQ(parsed, DType::F64);
  EXPECT_FALSE(dtype_from_safetensors("F128", parsed));
  EXPECT_FALSE(dtype_from_safetensors("f32", parsed));
}

TEST(DType, Bf16KnownValuesTiesAndNaN) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.5f), 0xc020);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
  // Halfway cases go to the even mantissa.
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A signalling NaN payload that would round to infinity must stay NaN.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::signaling_NaN()))));
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    float value = bf16_to_f32(static_cast<uint16_t>(bits));
    if (!std::isnan(value)) {
      ASSERT_EQ(f32_to_bf16(value), static_cast<uint16_t>(bits)) << std::hex << bits;
    }
  }
}

TEST(DType, F16KnownValuesSubnormalsAndTies) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to the next binade rounds to infinity
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x8000), 0.0f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_TRUE(std::isinf(f16_to_f32(0xfc00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    float value = f16_to_f32(static_cast<uint16_t>(bits));
    if (!std::isnan(value)) {
      ASSERT_EQ(f32_to_f16(value), static_cast<uint16_t>(bits)) << std::hex << bits;
    }
  }
}

TEST(DType, F8E4M3KnownValuesSaturationAndTies) {
  EXPECT_EQ(f8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(f8_e4m3_to_f32(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(f8_e4m3_to_f32(0x07), 7 * 0x1p-9f);
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0xff)));
  EXPECT_EQ(f32_to_f8_e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_f8_e4m3(1000.0f), 0x7e);  // saturates (e4m3fn has no infinity)
  EXPECT_EQ(f32_to_f8_e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(f32_to_f8_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(f32_to_f8_e4m3(1.0625f), 0x38);  // halfway between 1 and 1.125: even
  EXPECT_EQ(f32_to_f8_e4m3(1.1875f), 0x3a);  // halfway between 1.125 and 1.25: even
  EXPECT_EQ(f32_to_f8_e4m3(0x1p-10f), 0x00);
  EXPECT_EQ(f32_to_f8_e4m3(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(f32_to_f8_e4m3(-0.0f), 0x80);
  EXPECT_EQ(f32_to_f8_e4m3(-0x1p-11f), 0x80);  // underflow keeps the sign
  EXPECT_EQ(f32_to_f8_e4m3(464.0f), 0x7e);     // past 448 saturates instead of becoming NaN
  EXPECT_EQ(f32_to_f8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(f32_to_f8_e4m3(-std::numeric_limits<float>::quiet_NaN()), 0x7f);  // NaN drops its sign
  EXPECT_EQ(f32_to_f8_e4m3(15 * 0x1p-10f), 0x08);  // halfway from the largest subnormal: the even normal
  for (uint32_t bits = 0; bits < 0x100; ++bits) {
    float value = f8_e4m3_to_f32(static_cast<uint8_t>(bits));
    if (!std::isnan(value)) {
      ASSERT_EQ(f32_to_f8_e4m3(value), static_cast<uint8_t>(bits)) << std::hex << bits;
    }
  }
}

TEST(DType, F8E5M2KnownValuesInfinityAndTies) {
  EXPECT_EQ(f8_e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(f8_e5m2_to_f32(0x3c), 1.0f);
  EXPECT_EQ(f8_e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(f8_e5m2_to_f32(0x04), 0x1p-14f);
  EXPECT_TRUE(std::isinf(f8_e5m2_to_f32(0x7c)));
  EXPECT_LT(f8_e5m2_to_f32(0xfc), 0.0f);
  EXPECT_TRUE(std::isnan(f8_e5m2_to_f32(0x7d)));
  EXPECT_EQ(f32_to_f8_e5m2(std::numeric_limits<float>::infinity()), 0x7c);
  EXPECT_EQ(f32_to_f8_e5m2(-std::numeric_limits<float>::infinity()), 0xfc);
  EXPECT_TRUE(std::isnan(f8_e5m2_to_f32(f32_to_f8_e5m2(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(f32_to_f8_e5m2(1.125f), 0x3c);
  EXPECT_EQ(f32_to_f8_e5m2(1.375f), 0x3e);
  EXPECT_EQ(f32_to_f8_e5m2(61440.0f), 0x7b);  // finite values saturate; only infinity encodes as infinity
  EXPECT_EQ(f32_to_f8_e5m2(-1e6f), 0xfb);
  EXPECT_EQ(f32_to_f8_e5m2(-std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(f32_to_f8_e5m2(0x1p-17f), 0x00);  // halfway to the smallest subnormal: even
  EXPECT_EQ(f32_to_f8_e5m2(3 * 0x1p-17f), 0x02);
  for (uint32_t bits = 0; bits < 0x100; ++bits) {
    float value = f8_e5m2_to_f32(static_cast<uint8_t>(bits));
    if (!std::isnan(value)) {
      ASSERT_EQ(f32_to_f8_e5m2(value), static_cast<uint8_t>(bits)) << std::hex << bits;
    }
  }
}

// The fp8 encoders' specification as a slow search: the finite code nearest to |value|, ties to the even
// code, saturating at the largest finite code. NaN and (for e5m2) infinities are the callers' business.
class NearestCodeSearch {
 public:
  NearestCodeSearch(float (*decode)(uint8_t), uint8_t max_code) {
    for (int code = 0; code <= max_code; ++code) magnitudes_.push_back(decode(static_cast<uint8_t>(code)));
  }

  uint8_t operator()(float value) const {
    const uint8_t sign = std::signbit(value) ? 0x80 : 0;
    const float magnitude = std::fabs(value);
    if (magnitude >= magnitudes_.back()) return sign | static_cast<uint8_t>(magnitudes_.size() - 1);
    size_t best = 0;
    for (size_t code = 1; code < magnitudes_.size(); ++code) {
      const float error = std::fabs(magnitudes_[code] - magnitude);
      const float best_error = std::fabs(magnitudes_[best] - magnitude);
      if (error < best_error || (error == best_error && code % 2 == 0)) best = code;
    }
    return sign | static_cast<uint8_t>(best);
  }

  const std::vector<float>& magnitudes() const { return magnitudes_; }

 private:
  std::vector<float> magnitudes_;
};

// Inputs that probe an f32 -> fp8 encoder, both signs: every bf16 and f16 value, every code and every
// midpoint between neighbouring codes with their f32 neighbours, specials, and four million random floats
// (half with any bit pattern, half with exponents around the fp8 ranges).
std::vector<float> encoder_probes(const std::vector<float>& magnitudes) {
  std::vector<float> probes;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    probes.push_back(bf16_to_f32(static_cast<uint16_t>(bits)));
    probes.push_back(f16_to_f32(static_cast<uint16_t>(bits)));
  }
  std::vector<float> anchors = magnitudes;
  for (size_t code = 0; code + 1 < magnitudes.size(); ++code) {
    anchors.push_back(0.5f * (magnitudes[code] + magnitudes[code + 1]));  // exact: at most 5 bits
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float anchor : anchors) {
    for (float probe : {anchor, std::nextafter(anchor, 0.0f), std::nextafter(anchor, inf)}) {
      probes.push_back(probe);
      probes.push_back(-probe);
    }
  }
  for (uint32_t bits : {0x00000001u, 0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x7f800000u, 0x7f800001u,
                        0x7fc00000u, 0x7fffffffu}) {
    probes.push_back(std::bit_cast<float>(bits));
    probes.push_back(std::bit_cast<float>(bits | 0x80000000u));
  }
  std::mt19937 generator(2024);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::uniform_int_distribution<uint32_t> exponent(127 - 20, 127 + 17);
  for (int i = 0; i < 2'000'000; ++i) {
    probes.push_back(std::bit_cast<float>(any_bits(generator)));
    const uint32_t sign_and_mantissa = any_bits(generator) & 0x807fffffu;
    probes.push_back(std::bit_cast<float>(sign_and_mantissa | exponent(generator) << 23));
  }
  return probes;
}

TEST(DType, F8E4M3EncoderMatchesNearestCodeSearch) {
  const NearestCodeSearch search(f8_e4m3_to_f32, 0x7e);
  int64_t mismatches = 0;
  for (float value : encoder_probes(search.magnitudes())) {
    const uint8_t expected = std::isnan(value) ? 0x7f : search(value);
    if (f32_to_f8_e4m3(value) != expected && mismatches++ < 10) {
      ADD_FAILURE() << std::hex << "bits 0x" << std::bit_cast<uint32_t>(value) << ": got 0x"
                    << int{f32_to_f8_e4m3(value)} << ", expected 0x" << int{expected};
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(DType, F8E5M2EncoderMatchesNearestCodeSearch) {
  const NearestCodeSearch search(f8_e5m2_to_f32, 0x7b);
  int64_t mismatches = 0;
  for (float value : encoder_probes(search.magnitudes())) {
    const uint8_t expected = std::isnan(value)   ? 0x7f
                             : std::isinf(value) ? (value > 0 ? 0x7c : 0xfc)
                                                 : search(value);
    if (f32_to_f8_e5m2(value) != expected && mismatches++ < 10) {
      ADD_FAILURE() << std::hex << "bits 0x" << std::bit_cast<uint32_t>(value) << ": got 0x"
                    << int{f32_to_f8_e5m2(value)} << ", expected 0x" << int{expected};
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(DType, BulkConversionsMatchScalarOnes) {
  const std::vector<float> values = {0.0f, -1.5f, 3.3f, 1e-6f, 60000.0f, -0.1f};
  std::vector<uint16_t> halves(values.size());
  convert_from_f32(values.data(), DType::F16, halves.data(), static_cast<int64_t>(values.size()));
  std::vector<float> widened(values.size());
  convert_to_f32(DType::F16, halves.data(), widened.data(), static_cast<int64_t>(values.size()));
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(halves[i], f32_to_f16(values[i]));
    EXPECT_EQ(widened[i], f16_to_f32(halves[i]));
  }
  const std::vector<int32_t> integers = {-7, 0, 1 << 20};
  std::vector<float> from_integers(integers.size());
  convert_to_f32(DType::I32, integers.data(), from_integers.data(), 3);
  EXPECT_EQ(from_integers, (std::vector<float>{-7.0f, 0.0f, 1048576.0f}));
  uint8_t bytes[4];
  EXPECT_THROW(convert_from_f32(values.data(), DType::U8, bytes, 4), Error);
  EXPECT_THROW(convert_to_f32(DType::NF4, bytes, widened.data(), 4), Error);
}

}  // namespace
}  // namespace canvas
