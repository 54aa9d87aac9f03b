// Quantizers for low-precision weight storage and the host-side dequantization the CPU linear uses.
#include "tensor/quantize.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "util/error.h"

namespace canvas {

namespace {

// The largest finite e4m3 value: a scale maps each group's largest magnitude onto it.
constexpr float kE4m3Max = 448.0f;

std::vector<float> host_values(const Tensor& weight) {
  check(weight.device().is_cpu(), "quantize_weight: weights are quantized on the host");
  check(is_float(weight.dtype()) && !is_block_quantized(weight.dtype()),
        "quantize_weight: needs a plain float tensor, got " + std::string(dtype_name(weight.dtype())));
  return weight.to_floats();
}

float absmax_of(const float* values, int64_t count) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < count; ++i) absmax = std::max(absmax, std::fabs(values[i]));
  return absmax;
}

// Encodes `count` values with one scale; returns the scale (1 for an all-zero group, whose codes are 0).
float encode_e4m3_group(const float* values, int64_t count, uint8_t* codes) {
  const float absmax = absmax_of(values, count);
  const float scale = absmax > 0.0f ? absmax / kE4m3Max : 1.0f;
  for (int64_t i = 0; i < count; ++i) codes[i] = f32_to_f8_e4m3(values[i] / scale);
  return scale;
}

QuantizedWeight quantize_fp8(const Tensor& weight, bool per_row) {
  check(!per_row || weight.ndim() == 2,
        "quantize_weight: per-row fp8 needs a 2-D weight, got " + std::to_string(weight.ndim()) + " axes");
  const std::vector<float> values = host_values(weight);
  const int64_t groups = per_row ? weight.dim(0) : 1;
  const int64_t group_size = groups == 0 ? 0 : weight.numel() / groups;
  QuantizedWeight result{Tensor::empty(weight.shape(), DType::F8_E4M3),
                         Tensor::empty({std::max<int64_t>(groups, 1)}, DType::F32)};
  result.scale.data<float>()[0] = 1.0f;
  for (int64_t group = 0; group < groups; ++group) {
    result.scale.data<float>()[group] = encode_e4m3_group(values.data() + group * group_size, group_size,
                                                          result.codes.data<uint8_t>() + group * group_size);
  }
  return result;
}

QuantizedWeight quantize_nf4(const Tensor& weight) {
  check(weight.numel() % kNf4BlockElements == 0,
        "quantize_weight: nf4 needs a multiple of 64 elements, got " + std::to_string(weight.numel()));
  const std::vector<float> values = host_values(weight);
  const int64_t blocks = weight.numel() / kNf4BlockElements;
  QuantizedWeight result{Tensor::empty(weight.shape(), DType::NF4), Tensor::empty({blocks}, DType::F32)};
  uint8_t* packed = result.codes.data<uint8_t>();
  float* absmax = result.scale.data<float>();
  for (int64_t block = 0; block < blocks; ++block) {
    const float* block_values = values.data() + block * kNf4BlockElements;
    absmax[block] = absmax_of(block_values, kNf4BlockElements);
    const float inverse = absmax[block] > 0.0f ? 1.0f / absmax[block] : 0.0f;
    for (int64_t i = 0; i < kNf4BlockElements; i += 2) {
      const uint8_t high = nf4_code_of(block_values[i] * inverse);
      const uint8_t low = nf4_code_of(block_values[i + 1] * inverse);
      packed[(block * kNf4BlockElements + i) / 2] = static_cast<uint8_t>(high << 4 | low);
    }
  }
  return result;
}

}  // namespace

WeightFormat weight_format_from_name(std::string_view name) {
  if (name == "fp8") return WeightFormat::Fp8PerTensor;
  if (name == "fp8-row") return WeightFormat::Fp8PerRow;
  if (name == "nf4") return WeightFormat::Nf4;
  throw Error("unknown weight format '" + std::string(name) + "' (expected fp8, fp8-row or nf4)");
}

const std::array<float, 16>& nf4_code_values() {
  static const std::array<float, 16> kValues = {
      -1.0f,
      -0.6961928009986877f,
      -0.5250730514526367f,
      -0.39491748809814453f,
      -0.28444138169288635f,
      -0.18477343022823334f,
      -0.09105003625154495f,
      0.0f,
      0.07958029955625534f,
      0.16093020141124725f,
      0.24611230194568634f,
      0.33791524171829224f,
      0.44070982933044434f,
      0.5626170039176941f,
      0.7229568362236023f,
      1.0f,
  };
  return kValues;
}

uint8_t nf4_code_of(float normalized) {
  // The table is ascending, so the nearest value is the first whose midpoint with its successor lies
  // above the input (ties go to the lower code).
  const std::array<float, 16>& values = nf4_code_values();
  uint8_t code = 0;
  while (code < 15 && normalized > 0.5f * (values[code] + values[code + 1])) ++code;
  return code;
}

QuantizedWeight quantize_weight(const Tensor& weight, WeightFormat format) {
  switch (format) {
    case WeightFormat::Fp8PerTensor:
      return quantize_fp8(weight, false);
    case WeightFormat::Fp8PerRow:
      return quantize_fp8(weight, true);
    case WeightFormat::Nf4:
      return quantize_nf4(weight);
  }
  throw Error("quantize_weight: unknown format");
}

void check_weight_scale(const Tensor& codes, const Tensor& scale, const char* op) {
  const std::string prefix = std::string(op) + ": ";
  check(scale.dtype() == DType::F32 && scale.ndim() == 1 && scale.is_contiguous(),
        prefix + "weight scales must be a contiguous 1-D f32 tensor");
  check(codes.is_contiguous(), prefix + "quantized weights must be contiguous");
  if (codes.dtype() == DType::F8_E4M3) {
    const int64_t rows = codes.ndim() == 0 ? 1 : codes.dim(0);
    check(scale.numel() == 1 || scale.numel() == rows,
          prefix + "fp8 weights need one scale or one per row, got " + std::to_string(scale.numel()));
  } else {
    check(codes.dtype() == DType::NF4, prefix + "weight scales apply to f8_e4m3 or nf4 weights, not " +
                                           std::string(dtype_name(codes.dtype())));
    check(codes.numel() % kNf4BlockElements == 0 && scale.numel() == codes.numel() / kNf4BlockElements,
          prefix + "nf4 weights need one absmax per 64 values, got " + std::to_string(scale.numel()) +
              " for " + std::to_string(codes.numel()) + " values");
  }
}

void dequantize_rows(const Tensor& codes, const Tensor& scale, int64_t first_row, int64_t row_count,
                     float* dst) {
  check_weight_scale(codes, scale, "dequantize_rows");
  check(codes.ndim() == 2 && first_row >= 0 && row_count >= 0 && first_row + row_count <= codes.dim(0),
        "dequantize_rows: rows out of range");
  const int64_t cols = codes.dim(1);
  const int64_t first = first_row * cols, count = row_count * cols;
  const float* scales = scale.data<float>();
  if (codes.dtype() == DType::F8_E4M3) {
    const uint8_t* bytes = codes.data<uint8_t>() + first;
    for (int64_t row = 0; row < row_count; ++row) {
      const float row_scale = scale.numel() == 1 ? scales[0] : scales[first_row + row];
      for (int64_t col = 0; col < cols; ++col) {
        dst[row * cols + col] = f8_e4m3_to_f32(bytes[row * cols + col]) * row_scale;
      }
    }
    return;
  }
  const std::array<float, 16>& values = nf4_code_values();
  const uint8_t* packed = codes.data<uint8_t>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t element = first + i;
    const uint8_t byte = packed[element / 2];
    const uint8_t code = element % 2 == 0 ? byte >> 4 : byte & 0x0f;
    dst[i] = values[code] * scales[element / kNf4BlockElements];
  }
}

Tensor dequantize_weight(const QuantizedWeight& weight) {
  const Tensor& codes = weight.codes;
  const int64_t rows = codes.ndim() == 0 ? 1 : codes.dim(0);
  const int64_t cols = rows == 0 ? 0 : codes.numel() / rows;
  Tensor result = Tensor::empty(codes.shape(), DType::F32);
  dequantize_rows(codes.view({rows, cols}), weight.scale, 0, rows, result.data<float>());
  return result;
}

}  // namespace canvas
