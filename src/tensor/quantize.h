// Low-precision weight storage: fp8 e4m3 codes with per-tensor or per-row f32 scales, and 4-bit NF4 codes
// in the bitsandbytes layout with one f32 absmax per 64 values. The codes replace a linear layer's weight
// tensor and the scales travel next to it (nn::Linear::weight_scale); backends dequantize on the fly.
#pragma once

#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace canvas {

enum class WeightFormat {
  Fp8PerTensor,  // e4m3 codes, one scale for the whole tensor (scale = absmax / 448)
  Fp8PerRow,     // e4m3 codes, one scale per output channel (row)
  Nf4,           // bitsandbytes NF4: 64-value blocks along the flattened tensor, one absmax each
};

// Parses "fp8", "fp8-row" and "nf4".
WeightFormat weight_format_from_name(std::string_view name);

// Values per NF4 absmax block, as bitsandbytes' default blocksize.
inline constexpr int64_t kNf4BlockElements = 64;

// The 16 normal-float values NF4 codes index (bitsandbytes' get_4bit_type("nf4")), ascending; code 7
// is exactly zero. Of two consecutive elements, the first sits in the byte's high nibble.
const std::array<float, 16>& nf4_code_values();
// The code of the table value nearest to `normalized` (a value divided by its block's absmax).
uint8_t nf4_code_of(float normalized);

struct QuantizedWeight {
  Tensor codes;  // F8_E4M3 or NF4, the original shape
  Tensor scale;  // F32: [1] or [rows] for fp8, [numel / 64] absmax for NF4
};

// Quantizes a host float tensor on the shared thread pool, widening a tile at a time (a bf16 checkpoint
// never exists as a whole in f32); the result does not depend on the thread count. Fp8PerRow needs a 2-D
// [rows, cols] tensor; Nf4 needs a multiple of 64 elements. Throws canvas::Error otherwise.
QuantizedWeight quantize_weight(const Tensor& weight, WeightFormat format);

// Widens rows [first_row, first_row + row_count) of a 2-D quantized host weight into `dst` (row-major
// f32), applying its scales. The format follows from codes' dtype and the scale's extent.
void dequantize_rows(const Tensor& codes, const Tensor& scale, int64_t first_row, int64_t row_count,
                     float* dst);
// The whole tensor back in f32 (host), mostly to measure quantization error.
Tensor dequantize_weight(const QuantizedWeight& weight);

// Throws canvas::Error unless `scale` fits `codes` as described at QuantizedWeight: for `op`'s messages.
void check_weight_scale(const Tensor& codes, const Tensor& scale, const char* op);

}  // namespace canvas
