// Widening of quantized weight codes (tensor/quantize.h) into dense matrices for the GEMMs in
// cuda_gemm.cpp, for the formats cuBLASLt cannot read with their scales itself.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace canvas::cuda {

// e4m3 codes [rows, cols] times their scales (one, or one per row when per_row) into `out`, a dense
// [rows, cols] matrix of the kernel dtype out_dtype (f32, bf16 or f16).
void dequantize_e4m3(const uint8_t* codes, const float* scales, bool per_row, int64_t rows, int64_t cols,
                     void* out, DType out_dtype, cudaStream_t stream);

// `count` NF4 values (two codes per byte, the first in the high nibble) times their blocks' absmax into
// `out`, `count` contiguous values of the kernel dtype out_dtype.
void dequantize_nf4(const uint8_t* codes, const float* absmax, int64_t count, void* out, DType out_dtype,
                    cudaStream_t stream);

}  // namespace canvas::cuda
