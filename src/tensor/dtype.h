// Element types a tensor can be stored in, and the scalar conversions between them.
#pragma once

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
// Saturates to ±448 (torch's cast gives NaN from 464 up); quantizers scale values into range first.
uint8_t f32_to_f8_e4m3(float value);
float f8_e5m2_to_f32(uint8_t bits);
uint8_t f32_to_f8_e5m2(float value);

// Widens `count` contiguous elements of a plain float type into f32.
void convert_to_f32(DType src_dtype, const void* src, float* dst, int64_t count);
// Narrows `count` f32 values into a plain float type.
void convert_from_f32(const float* src, DType dst_dtype, void* dst, int64_t count);

}  // namespace canvas
