// Element types a tensor can be stored in, and the scalar conversions between them.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace canvas {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  F64,
  I64,
  I32,
  U8,
  Bool,
  // Block-quantized storage: elements come in fixed-size blocks that carry their own scales.
  NF4,
  Q8_0,
  Q4_K,
  // The other GGML block types GGUF checkpoints use (tensor/ggml_dequantize.h).
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q2_K,
  Q3_K,
  Q5_K,
  Q6_K,
  IQ4_NL,
  IQ4_XS,
};

struct DTypeInfo {
  std::string_view name;
  // Elements per storage block (1 for plain types) and bytes per block.
  int64_t block_elements;
  int64_t block_bytes;
  bool is_float;
};

const DTypeInfo& dtype_info(DType dtype);
inline std::string_view dtype_name(DType dtype) {
  return dtype_info(dtype).name;
}
inline bool is_block_quantized(DType dtype) {
  return dtype_info(dtype).block_elements > 1;
}
inline bool is_float(DType dtype) {
  return dtype_info(dtype).is_float;
}

// Bytes needed for `elements` values; throws if elements is not a whole number of blocks.
int64_t storage_bytes(DType dtype, int64_t elements);
// Element size in bytes for plain (non-block) types.
int64_t element_size(DType dtype);

// Parses names as they appear in safetensors headers ("F32", "BF16", "F8_E4M3", ...).
bool dtype_from_safetensors(std::string_view name, DType& out);

// ---- scalar conversions ----

inline float bf16_to_f32(uint16_t bits) {
  uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// Round to nearest even, as torch does; NaN stays a quiet NaN.
inline uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
float f8_e4m3_to_f32(uint8_t bits);
float f8_e5m2_to_f32(uint8_t bits);

namespace detail {

// `condition ? if_true : if_false` as bit arithmetic. A branch would let the compiler move the FP addition
// in round_to_minifloat under the condition, and as FP operations may raise exceptions it would then not
// execute them unconditionally on all vector lanes: the quantizers' loops would stay scalar.
inline uint32_t select_bits(bool condition, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return (if_true & mask) | (if_false & ~mask);
}

// Rounds a finite f32 magnitude (sign clear, at most the format's largest finite value) to the nearest
// code of a small float with `mantissa_bits` and exponent `bias`, ties to even.
inline uint32_t round_to_minifloat(uint32_t magnitude, int mantissa_bits, int bias) {
  const int dropped_bits = 23 - mantissa_bits;
  // Normal result: round away the low mantissa bits (a carry bumps the exponent), then rebias.
  const uint32_t rounded = magnitude + (1u << (dropped_bits - 1)) - 1 + ((magnitude >> dropped_bits) & 1u);
  const uint32_t normal = (rounded >> dropped_bits) - (static_cast<uint32_t>(127 - bias) << mantissa_bits);
  // Subnormal result: adding a power of two whose f32 ulp is the format's smallest subnormal has the FPU
  // round to nearest even (the default mode, which nothing here changes), and the mantissa then counts
  // smallest subnormals. Rounding up to the smallest normal gives its code too.
  const float anchor = std::bit_cast<float>(static_cast<uint32_t>(151 - bias - mantissa_bits) << 23);
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(magnitude) + anchor) - std::bit_cast<uint32_t>(anchor);
  return select_bits(magnitude < static_cast<uint32_t>(128 - bias) << 23, subnormal, normal);
}

}  // namespace detail

// Round to nearest even. Finite values past ±448 saturate to ±448 (torch's cast gives NaN from 464 up),
// infinities too; NaN becomes 0x7f whatever its sign. Quantizers scale values into range first. Branch-free
// and inline, so their loops over every weight vectorize.
inline uint8_t f32_to_f8_e4m3(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t magnitude = bits & 0x7fffffffu;
  // Clamping at 448 saturates: 448 itself rounds to 0x7e.
  const uint32_t code =
      detail::round_to_minifloat(std::min(magnitude, 0x43e00000u), 3, 7) | ((bits >> 24) & 0x80u);
  return static_cast<uint8_t>(detail::select_bits(magnitude > 0x7f800000u, 0x7f, code));
}

// Round to nearest even. Finite values past ±57344 saturate to ±57344 and infinities stay infinite; NaN
// becomes 0x7f whatever its sign.
inline uint8_t f32_to_f8_e5m2(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t magnitude = bits & 0x7fffffffu;
  const uint32_t sign = (bits >> 24) & 0x80u;
  if (magnitude > 0x7f800000u) return 0x7f;
  if (magnitude == 0x7f800000u) return static_cast<uint8_t>(sign | 0x7c);
  return static_cast<uint8_t>(detail::round_to_minifloat(std::min(magnitude, 0x47600000u), 2, 15) | sign);
}

// Widens `count` contiguous elements of a plain float type into f32.
void convert_to_f32(DType src_dtype, const void* src, float* dst, int64_t count);
// Narrows `count` f32 values into a plain float type.
void convert_from_f32(const float* src, DType dst_dtype, void* dst, int64_t count);

}  // namespace canvas
