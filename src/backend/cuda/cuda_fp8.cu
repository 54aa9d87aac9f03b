// Per-tensor e4m3 quantization: one pass for the absolute maximum, one for the scaled cast. The scale
// never leaves the device, so an FP8 linear layer costs no host synchronization.
#include "backend/cuda/cuda_fp8.h"
#include "backend/cuda/cuda_kernel_support.cuh"

namespace canvas::cuda {

namespace {

using Bf16Pack = Pack<__nv_bfloat16>;
constexpr int kPackSize = Bf16Pack::kSize;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// Folds every thread's value into *amax. amax starts at +0; non-negative floats order like their bit
// patterns read as ints, which lets an integer atomicMax do a float max. fmaxf drops NaNs.
__device__ void block_max_into(float value, float* amax) {
  __shared__ float warp_maxima[kThreadsPerBlock / kWarpSize];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  value = warp_max(value);
  if (lane == 0) warp_maxima[warp] = value;
  __syncthreads();
  if (warp != 0) return;
  value = lane < blockDim.x / kWarpSize ? warp_maxima[lane] : 0.0f;
  value = warp_max(value);
  if (lane == 0) atomicMax(reinterpret_cast<int*>(amax), __float_as_int(value));
}

// `vectorized`: the input base is 16-byte aligned, so whole packs of 8 values load at once.
__global__ void absmax_kernel(const __nv_bfloat16* __restrict__ input, int64_t count, bool vectorized,
                              float* __restrict__ amax) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float local = 0.0f;
  const int64_t packs = vectorized ? count / kPackSize : 0;
  for (int64_t p = first; p < packs; p += step) {
    const Bf16Pack loaded = reinterpret_cast<const Bf16Pack*>(input)[p];
#pragma unroll
    for (int j = 0; j < kPackSize; ++j) local = fmaxf(local, fabsf(to_float(loaded.values[j])));
  }
  for (int64_t i = packs * kPackSize + first; i < count; i += step)
    local = fmaxf(local, fabsf(to_float(input[i])));
  block_max_into(local, amax);
}

__device__ __forceinline__ float quantization_scale(float absmax) {
  return absmax > 0.0f ? kE4m3Max / absmax : 1.0f;
}

__global__ void quantize_kernel(const __nv_bfloat16* __restrict__ input, int64_t count, bool vectorized,
                                const float* __restrict__ amax, uint8_t* __restrict__ output,
                                float* __restrict__ dequant_scale) {
  const float absmax = *amax;
  const float scale = quantization_scale(absmax);
  if (blockIdx.x == 0 && threadIdx.x == 0) *dequant_scale = absmax > 0.0f ? absmax / kE4m3Max : 1.0f;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vectorized ? count / kPackSize : 0;
  for (int64_t p = first; p < packs; p += step) {
    const Bf16Pack loaded = reinterpret_cast<const Bf16Pack*>(input)[p];
    union {
      uint8_t bytes[kPackSize];
      uint2 word;
    } quantized;
#pragma unroll
    for (int j = 0; j < kPackSize; ++j)
      quantized.bytes[j] = float_to_e4m3(to_float(loaded.values[j]) * scale);
    reinterpret_cast<uint2*>(output)[p] = quantized.word;
  }
  for (int64_t i = packs * kPackSize + first; i < count; i += step) {
    output[i] = float_to_e4m3(to_float(input[i]) * scale);
  }
}

}  // namespace

void quantize_bf16_to_e4m3(const void* input, int64_t count, uint8_t* output, float* amax_scratch,
                           float* dequant_scale, cudaStream_t stream) {
  const auto* values = static_cast<const __nv_bfloat16*>(input);
  // Packs of 8 bf16 (16 bytes) in, 8 e4m3 (8 bytes) out.
  const bool vectorized =
      reinterpret_cast<uintptr_t>(input) % 16 == 0 && reinterpret_cast<uintptr_t>(output) % 8 == 0;
  const unsigned blocks = grid_blocks(vectorized ? ceil_div(count, kPackSize) : count, kThreadsPerBlock);
  CANVAS_CUDA_CHECK(cudaMemsetAsync(amax_scratch, 0, sizeof(float), stream));
  absmax_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(values, count, vectorized, amax_scratch);
  CANVAS_CUDA_CHECK_LAUNCH();
  quantize_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(values, count, vectorized, amax_scratch, output,
                                                           dequant_scale);
  CANVAS_CUDA_CHECK_LAUNCH();
}

}  // namespace canvas::cuda
