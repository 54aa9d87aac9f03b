#include "tensor/dtype.h"

#include <array>
#include <cmath>
#include <string>

#include "util/error.h"

namespace canvas {

namespace {

constexpr std::array<DTypeInfo, 23> kDTypeInfo = {{
    {"f32", 1, 4, true},
    {"f16", 1, 2, true},
    {"bf16", 1, 2, true},
    {"f8_e4m3", 1, 1, true},
    {"f8_e5m2", 1, 1, true},
    {"f64", 1, 8, true},
    {"i64", 1, 8, false},
    {"i32", 1, 4, false},
    {"u8", 1, 1, false},
    {"bool", 1, 1, false},
    // bitsandbytes NF4: two four-bit codes per byte. The f32 absmax of each 64 values is stored next to
    // the codes as a separate tensor (tensor/quantize.h), as bitsandbytes keeps it in its quant state.
    {"nf4", 2, 1, true},
    // GGML Q8_0: 32 int8 values plus one f16 scale.
    {"q8_0", 32, 32 + 2, true},
    // GGML Q4_K: 256 values in 8 sub-blocks with 6-bit scales and mins, plus f16 d and dmin.
    {"q4_k", 256, 144, true},
    // The rest of GGML's blocks, laid out as ggml-common.h's block_* structs: 32 values with an f16 scale
    // (and f16 min, and 32 high bits for the five-bit types), or 256-value super-blocks (the K and IQ4_XS
    // types) with packed sub-block scales.
    {"q4_0", 32, 2 + 16, true},
    {"q4_1", 32, 2 + 2 + 16, true},
    {"q5_0", 32, 2 + 4 + 16, true},
    {"q5_1", 32, 2 + 2 + 4 + 16, true},
    {"q2_k", 256, 16 + 64 + 2 + 2, true},
    {"q3_k", 256, 32 + 64 + 12 + 2, true},
    {"q5_k", 256, 2 + 2 + 12 + 32 + 128, true},
    {"q6_k", 256, 128 + 64 + 16 + 2, true},
    {"iq4_nl", 32, 2 + 16, true},
    {"iq4_xs", 256, 2 + 2 + 4 + 128, true},
}};

}  // namespace

const DTypeInfo& dtype_info(DType dtype) {
  return kDTypeInfo.at(static_cast<size_t>(dtype));
}

int64_t storage_bytes(DType dtype, int64_t elements) {
  const DTypeInfo& info = dtype_info(dtype);
  check(elements >= 0, "negative element count");
  check(elements % info.block_elements == 0,
        std::to_string(elements) + " elements is not a whole number of " + std::string(info.name) +
            " blocks of " + std::to_string(info.block_elements));
  return elements / info.block_elements * info.block_bytes;
}

int64_t element_size(DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  check(info.block_elements == 1, std::string(info.name) + " is block-quantized and has no element size");
  return info.block_bytes;
}

bool dtype_from_safetensors(std::string_view name, DType& out) {
  struct Entry {
    std::string_view name;
    DType dtype;
  };
  static constexpr Entry kNames[] = {
      {"F32", DType::F32},         {"F16", DType::F16},   {"BF16", DType::BF16}, {"F8_E4M3", DType::F8_E4M3},
      {"F8_E5M2", DType::F8_E5M2}, {"F64", DType::F64},   {"I64", DType::I64},   {"I32", DType::I32},
      {"U8", DType::U8},           {"BOOL", DType::Bool},
  };
  for (const Entry& entry : kNames) {
    if (entry.name == name) {
      out = entry.dtype;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t result;
  if (exponent == 0x1f) {
    result = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    result = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    result = sign;
  } else {
    // Subnormal half: renormalize into a normal float.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    result = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &result, sizeof(value));
  return value;
}

uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity
  if (magnitude < 0x38800000u) {
    // Result is subnormal or zero: let the FPU round by adding a bias that aligns the mantissa.
    float abs_value;
    std::memcpy(&abs_value, &magnitude, sizeof(abs_value));
    float shifted = abs_value + 0.5f;
    uint32_t shifted_bits;
    std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
    return sign | static_cast<uint16_t>(shifted_bits - 0x3f000000u);
  }
  uint32_t rounding = 0xfffu + ((magnitude >> 13) & 1u);
  return sign | static_cast<uint16_t>((magnitude - 0x38000000u + rounding) >> 13);
}

namespace {

// Decodes a small float with the given exponent/mantissa widths.
float decode_minifloat(uint8_t bits, int exponent_bits, int mantissa_bits, int bias) {
  int sign = bits >> 7;
  int exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1);
  int mantissa = bits & ((1 << mantissa_bits) - 1);
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), 1 - bias - mantissa_bits);
  } else {
    magnitude =
        std::ldexp(static_cast<float>(mantissa + (1 << mantissa_bits)), exponent - bias - mantissa_bits);
  }
  return sign ? -magnitude : magnitude;
}

}  // namespace

float f8_e4m3_to_f32(uint8_t bits) {
  if ((bits & 0x7f) == 0x7f) return std::nanf("");
  return decode_minifloat(bits, 4, 3, 7);
}

float f8_e5m2_to_f32(uint8_t bits) {
  int exponent = (bits >> 2) & 0x1f;
  if (exponent == 0x1f) {
    if (bits & 0x3) return std::nanf("");
    return (bits & 0x80) ? -INFINITY : INFINITY;
  }
  return decode_minifloat(bits, 5, 2, 15);
}

void convert_to_f32(DType src_dtype, const void* src, float* dst, int64_t count) {
  switch (src_dtype) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::BF16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(in[i]);
      return;
    }
    case DType::F16: {
      const auto* in = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_f32(in[i]);
      return;
    }
    case DType::F8_E4M3: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = f8_e4m3_to_f32(in[i]);
      return;
    }
    case DType::F8_E5M2: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = f8_e5m2_to_f32(in[i]);
      return;
    }
    case DType::F64: {
      const auto* in = static_cast<const double*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(in[i]);
      return;
    }
    case DType::I64: {
      const auto* in = static_cast<const int64_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(in[i]);
      return;
    }
    case DType::I32: {
      const auto* in = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(in[i]);
      return;
    }
    case DType::U8:
    case DType::Bool: {
      const auto* in = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(in[i]);
      return;
    }
    default:
      throw Error("cannot widen " + std::string(dtype_name(src_dtype)) +
                  " element-wise; it needs dequantization");
  }
}

void convert_from_f32(const float* src, DType dst_dtype, void* dst, int64_t count) {
  switch (dst_dtype) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
      return;
    case DType::BF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::F8_E4M3: {
      auto* out = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_f8_e4m3(src[i]);
      return;
    }
    case DType::F8_E5M2: {
      auto* out = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_f8_e5m2(src[i]);
      return;
    }
    case DType::F64: {
      auto* out = static_cast<double*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = src[i];
      return;
    }
    case DType::I64: {
      auto* out = static_cast<int64_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(src[i]);
      return;
    }
    case DType::I32: {
      auto* out = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(src[i]);
      return;
    }
    default:
      throw Error("cannot narrow f32 into " + std::string(dtype_name(dst_dtype)) + " element-wise");
  }
}

}  // namespace canvas
