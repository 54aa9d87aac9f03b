// Quantizers for low-precision weight storage and the host-side dequantization the CPU linear uses.
#include "tensor/quantize.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "util/error.h"
#include "util/thread_pool.h"

namespace canvas {

namespace {

// The largest finite e4m3 value: a scale maps each group's largest magnitude onto it.
constexpr float kE4m3Max = 448.0f;

// Elements widened to f32 at a time: a quantizer's scratch stays at 256 KiB per thread rather than a
// full-size f32 copy of the weight (four times the bytes of the bf16 checkpoint).
constexpr int64_t kTileElements = 1 << 16;

constexpr std::array<float, 16> kNf4Values = {
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

// Decision thresholds: midpoint[i] separates code i from code i + 1.
constexpr std::array<float, 15> kNf4Midpoints = [] {
  std::array<float, 15> midpoints{};
  for (size_t code = 0; code < midpoints.size(); ++code) {
    midpoints[code] = 0.5f * (kNf4Values[code] + kNf4Values[code + 1]);
  }
  return midpoints;
}();

// A contiguous host tensor of a plain float dtype: quantizers read it a tile at a time.
Tensor host_source(const Tensor& weight) {
  check(weight.device().is_cpu(), "quantize_weight: weights are quantized on the host");
  check(is_float(weight.dtype()) && !is_block_quantized(weight.dtype()),
        "quantize_weight: needs a plain float tensor, got " + std::string(dtype_name(weight.dtype())));
  return weight.contiguous();
}

// Runs fn(first, count, values) on the pool for consecutive tiles of `tile` elements of `source` (the
// last may be shorter), `values` holding the tile widened to f32. Tiles never straddle a quantization
// group when `tile` is a multiple of the group size.
template <typename Fn>
void for_each_tile(const Tensor& source, int64_t tile, const Fn& fn) {
  const int64_t total = source.numel();
  if (total == 0) return;
  const DType dtype = source.dtype();
  const auto* bytes = static_cast<const uint8_t*>(source.raw_data());
  const int64_t element_bytes = element_size(dtype);
  parallel_for((total + tile - 1) / tile, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t index = begin; index < end; ++index) {
      const int64_t first = index * tile;
      const int64_t count = std::min(tile, total - first);
      if (dtype == DType::F32) {
        fn(first, count, reinterpret_cast<const float*>(bytes) + first);
        continue;
      }
      scratch.resize(static_cast<size_t>(count));
      convert_to_f32(dtype, bytes + first * element_bytes, scratch.data(), count);
      fn(first, count, scratch.data());
    }
  });
}

// Largest magnitude; NaN is ignored, as std::max keeps its first argument when the second is NaN. With NaN
// never taken and no -0 among magnitudes, the maximum does not depend on the order it is taken in, so
// independent lanes (which vectorize) give the same result as one running maximum.
float absmax_of(const float* values, int64_t count) {
  constexpr int64_t kLanes = 8;
  std::array<float, kLanes> lanes{};
  const int64_t whole = count - count % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int64_t lane = 0; lane < kLanes; ++lane) {
      lanes[lane] = std::max(lanes[lane], std::fabs(values[i + lane]));
    }
  }
  for (int64_t i = whole; i < count; ++i) lanes[i - whole] = std::max(lanes[i - whole], std::fabs(values[i]));
  float absmax = 0.0f;
  for (float lane : lanes) absmax = std::max(absmax, lane);
  return absmax;
}

// One scale for a group whose largest magnitude is `absmax`; 1 for an all-zero group, whose codes are 0.
float e4m3_scale(float absmax) {
  return absmax > 0.0f ? absmax / kE4m3Max : 1.0f;
}

void encode_e4m3(const float* values, int64_t count, float scale, uint8_t* codes) {
  for (int64_t i = 0; i < count; ++i) codes[i] = f32_to_f8_e4m3(values[i] / scale);
}

QuantizedWeight quantize_fp8(const Tensor& weight, bool per_row) {
  check(!per_row || weight.ndim() == 2,
        "quantize_weight: per-row fp8 needs a 2-D weight, got " + std::to_string(weight.ndim()) + " axes");
  const Tensor source = host_source(weight);
  const int64_t groups = per_row ? weight.dim(0) : 1;
  QuantizedWeight result{Tensor::empty(weight.shape(), DType::F8_E4M3),
                         Tensor::empty({std::max<int64_t>(groups, 1)}, DType::F32)};
  uint8_t* codes = result.codes.data<uint8_t>();
  float* scales = result.scale.data<float>();
  // Groups without elements (no rows, or empty rows) keep scale 1.
  std::fill_n(scales, result.scale.numel(), 1.0f);
  if (per_row) {
    const int64_t cols = weight.dim(1);
    const int64_t rows_per_tile = std::max<int64_t>(1, kTileElements / std::max<int64_t>(cols, 1));
    for_each_tile(source, rows_per_tile * cols, [&](int64_t first, int64_t count, const float* values) {
      for (int64_t offset = 0; offset < count; offset += cols) {
        const float scale = e4m3_scale(absmax_of(values + offset, cols));
        scales[(first + offset) / cols] = scale;
        encode_e4m3(values + offset, cols, scale, codes + first + offset);
      }
    });
    return result;
  }
  // Two passes over the source, so that no f32 copy of the whole tensor is needed. The maximum does not
  // depend on the order the tiles finish in, so neither does the scale.
  std::vector<float> tile_absmax(static_cast<size_t>((source.numel() + kTileElements - 1) / kTileElements));
  for_each_tile(source, kTileElements, [&](int64_t first, int64_t count, const float* values) {
    tile_absmax[first / kTileElements] = absmax_of(values, count);
  });
  const float scale = e4m3_scale(absmax_of(tile_absmax.data(), static_cast<int64_t>(tile_absmax.size())));
  scales[0] = scale;
  for_each_tile(source, kTileElements, [&](int64_t first, int64_t count, const float* values) {
    encode_e4m3(values, count, scale, codes + first);
  });
  return result;
}

QuantizedWeight quantize_nf4(const Tensor& weight) {
  check(weight.numel() % kNf4BlockElements == 0,
        "quantize_weight: nf4 needs a multiple of 64 elements, got " + std::to_string(weight.numel()));
  const Tensor source = host_source(weight);
  const int64_t blocks = weight.numel() / kNf4BlockElements;
  QuantizedWeight result{Tensor::empty(weight.shape(), DType::NF4), Tensor::empty({blocks}, DType::F32)};
  uint8_t* packed = result.codes.data<uint8_t>();
  float* absmax = result.scale.data<float>();
  for_each_tile(source, kTileElements, [&](int64_t first, int64_t count, const float* values) {
    for (int64_t offset = 0; offset < count; offset += kNf4BlockElements) {
      const int64_t block = (first + offset) / kNf4BlockElements;
      const float* block_values = values + offset;
      absmax[block] = absmax_of(block_values, kNf4BlockElements);
      const float inverse = absmax[block] > 0.0f ? 1.0f / absmax[block] : 0.0f;
      // Codes first, then pairs into bytes: the compiler vectorizes the search only without the pairing.
      std::array<uint8_t, kNf4BlockElements> block_codes;
      for (int64_t i = 0; i < kNf4BlockElements; ++i) block_codes[i] = nf4_code_of(block_values[i] * inverse);
      uint8_t* block_bytes = packed + block * kNf4BlockElements / 2;
      for (int64_t i = 0; i < kNf4BlockElements; i += 2) {
        block_bytes[i / 2] = static_cast<uint8_t>(block_codes[i] << 4 | block_codes[i + 1]);
      }
    }
  });
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
  return kNf4Values;
}

uint8_t nf4_code_of(float normalized) {
  // The code is the number of midpoints below the input (ties go to the lower code, NaN to code 0).
  // Halving the candidate range four times finds it among the 15 ascending midpoints.
  int code = normalized > kNf4Midpoints[7] ? 8 : 0;
  code += normalized > kNf4Midpoints[code + 3] ? 4 : 0;
  code += normalized > kNf4Midpoints[code + 1] ? 2 : 0;
  code += normalized > kNf4Midpoints[code] ? 1 : 0;
  return static_cast<uint8_t>(code);
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
