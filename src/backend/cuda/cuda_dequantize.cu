// Dequantization kernels: one thread per e4m3 code or per NF4 byte (two values), grid-stride loops.
#include <algorithm>

#include "backend/cuda/cuda_dequantize.h"
#include "backend/cuda/cuda_kernel_support.cuh"
#include "tensor/quantize.h"

namespace canvas::cuda {

namespace {

// bitsandbytes' NF4 values in code order, passed by value so every launch carries its own copy in the
// kernel parameter space and no device state needs initializing.
struct Nf4Values {
  float values[16];
};

template <typename T>
__global__ void dequantize_e4m3_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                                       bool per_row, int64_t rows, int64_t cols, T* __restrict__ out) {
  const int64_t count = rows * cols;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step) {
    const float scale = scales[per_row ? i / cols : 0];
    out[i] = from_float<T>(fp8_to_float(codes[i], __NV_E4M3) * scale);
  }
}

template <typename T>
__global__ void dequantize_nf4_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ absmax,
                                      int64_t bytes, Nf4Values table, T* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < bytes; i += step) {
    const uint8_t byte = codes[i];
    // Both values of a byte share a block: blocks hold an even number of values.
    const float scale = absmax[2 * i / kNf4BlockElements];
    out[2 * i] = from_float<T>(table.values[byte >> 4] * scale);
    out[2 * i + 1] = from_float<T>(table.values[byte & 0x0f] * scale);
  }
}

}  // namespace

void dequantize_e4m3(const uint8_t* codes, const float* scales, bool per_row, int64_t rows, int64_t cols,
                     void* out, DType out_dtype, cudaStream_t stream) {
  const unsigned blocks = grid_blocks(rows * cols, kThreadsPerBlock);
  dispatch_kernel_dtype(out_dtype, [&](auto zero) {
    using T = decltype(zero);
    dequantize_e4m3_kernel<T>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(codes, scales, per_row, rows, cols, static_cast<T*>(out));
  });
  CANVAS_CUDA_CHECK_LAUNCH();
}

void dequantize_nf4(const uint8_t* codes, const float* absmax, int64_t count, void* out, DType out_dtype,
                    cudaStream_t stream) {
  Nf4Values table;
  std::copy(nf4_code_values().begin(), nf4_code_values().end(), table.values);
  const int64_t bytes = count / 2;
  const unsigned blocks = grid_blocks(bytes, kThreadsPerBlock);
  dispatch_kernel_dtype(out_dtype, [&](auto zero) {
    using T = decltype(zero);
    dequantize_nf4_kernel<T>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(codes, absmax, bytes, table, static_cast<T*>(out));
  });
  CANVAS_CUDA_CHECK_LAUNCH();
}

}  // namespace canvas::cuda
