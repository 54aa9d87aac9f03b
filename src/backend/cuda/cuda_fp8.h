// Per-tensor quantization of activations to FP8 (e4m3) for the FP8 GEMM in cuda_gemm.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace canvas::cuda {

// The largest finite e4m3 value: the per-tensor scale maps the tensor's largest magnitude onto it.
inline constexpr float kE4m3Max = 448.0f;

// Quantizes `count` contiguous bf16 values into e4m3 with one scale for the whole tensor, so that its
// largest magnitude lands on ±448. Everything stays on the device (no host round trip): the absmax goes
// to amax_scratch (one float), and *dequant_scale receives the factor that turns the e4m3 values back
// into the inputs' range (absmax / 448, or 1 for an all-zero tensor), ready for cuBLASLt's scale pointer.
void quantize_bf16_to_e4m3(const void* input, int64_t count, uint8_t* output, float* amax_scratch,
                           float* dequant_scale, cudaStream_t stream);

}  // namespace canvas::cuda
