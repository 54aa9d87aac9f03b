// Key-mask preparation, unattended-row zeroing and the fallback attention kernel (see the header).
#include <climits>

#include "backend/cuda/cuda_attention_kernels.h"
#include "backend/cuda/cuda_kernel_support.cuh"

namespace canvas::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kDimsPerLane = static_cast<int>(kFallbackMaxHeadDim / kWarpSize);

__device__ __forceinline__ int warp_min(int value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = min(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// As the CPU reads the mask: widened to f32 (or read as an integer) and compared with zero.
__device__ __forceinline__ bool is_visible(const KeyMask& mask, int64_t offset) {
  if (is_integer_dtype(mask.dtype)) return load_integer(mask.data, mask.dtype, offset) != 0;
  return load_float(mask.data, mask.dtype, offset) != 0.0f;
}

// One block per sample.
__global__ void prepare_key_mask_kernel(KeyMask mask, int64_t keys, void* bias, DType bias_dtype,
                                        uint8_t* key_visible, int32_t* first_visible) {
  __shared__ int warp_first[kThreadsPerBlock / kWarpSize];
  const int64_t b = blockIdx.x;
  int first = static_cast<int>(keys);
  for (int64_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const bool visible = is_visible(mask, b * mask.batch_stride + j * mask.key_stride);
    if (visible && j < first) first = static_cast<int>(j);
    if (bias) store_float(bias, bias_dtype, b * keys + j, visible ? 0.0f : kHiddenKeyBias);
    if (key_visible) key_visible[b * keys + j] = visible;
  }
  first = warp_min(first);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) warp_first[warp] = first;
  __syncthreads();
  if (warp != 0) return;
  first = lane < blockDim.x / kWarpSize ? warp_first[lane] : static_cast<int>(keys);
  first = warp_min(first);
  if (lane == 0) first_visible[b] = first;
}

// One thread per output row; rows that see a key are left alone.
template <typename Word>
__global__ void zero_unattended_rows_kernel(Word* out, int64_t heads, int64_t queries, int64_t keys,
                                            int64_t value_dim, int64_t rows, bool causal,
                                            const int32_t* first_visible) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < rows; row += step) {
    const int64_t query = row % queries, b = row / (heads * queries);
    const int64_t last_seen_key = causal ? query + keys - queries : keys - 1;
    if (first_visible[b] <= last_seen_key) continue;
    Word* values = out + row * value_dim;
    for (int64_t d = 0; d < value_dim; ++d) values[d] = Word{0};
  }
}

// Block (warps) x queries, grid (query tiles, heads, batch). Each lane owns dims lane, lane + 32, ... of
// the query and of the output accumulator, so only the dot products need the warp.
template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarpSize) attention_fallback_kernel(AttentionArgs args) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t query = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  const int64_t head = blockIdx.y, b = blockIdx.z;
  if (query >= args.queries) return;  // uniform across the warp
  const int64_t kv_head = head / (args.heads / args.kv_heads);

  const T* q = static_cast<const T*>(args.q) + b * args.q_strides[0] + head * args.q_strides[1] +
               query * args.q_strides[2];
  const T* k = static_cast<const T*>(args.k) + b * args.k_strides[0] + kv_head * args.k_strides[1];
  const T* v = static_cast<const T*>(args.v) + b * args.v_strides[0] + kv_head * args.v_strides[1];
  float q_values[kDimsPerLane], accumulator[kDimsPerLane];
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) {
    const int64_t d = lane + t * kWarpSize;
    q_values[t] = d < args.head_dim ? to_float(q[d * args.q_strides[3]]) : 0.0f;
    accumulator[t] = 0.0f;
  }

  const uint8_t* visible = args.key_visible ? args.key_visible + b * args.keys : nullptr;
  const int64_t key_end = args.causal ? min(args.keys, query + args.keys - args.queries + 1) : args.keys;
  float running_max = -INFINITY, running_sum = 0.0f;
  for (int64_t j = 0; j < key_end; ++j) {
    if (visible && !visible[j]) continue;  // uniform across the warp
    const T* key = k + j * args.k_strides[2];
    float partial = 0.0f;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int64_t d = lane + t * kWarpSize;
      if (d < args.head_dim) partial += q_values[t] * to_float(key[d * args.k_strides[3]]);
    }
    const float score = warp_sum(partial) * args.scale;
    const float new_max = fmaxf(running_max, score);
    const float correction = expf(running_max - new_max);  // 0 at the first visible key
    const float weight = expf(score - new_max);
    running_sum = running_sum * correction + weight;
    const T* value = v + j * args.v_strides[2];
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int64_t d = lane + t * kWarpSize;
      if (d < args.value_dim) {
        accumulator[t] = accumulator[t] * correction + weight * to_float(value[d * args.v_strides[3]]);
      }
    }
    running_max = new_max;
  }

  const float inverse_sum = running_sum > 0.0f ? 1.0f / running_sum : 0.0f;
  T* out = static_cast<T*>(args.out) + b * args.out_strides[0] + head * args.out_strides[1] +
           query * args.out_strides[2];
#pragma unroll
  for (int t = 0; t < kDimsPerLane; ++t) {
    const int64_t d = lane + t * kWarpSize;
    if (d < args.value_dim) out[d * args.out_strides[3]] = from_float<T>(accumulator[t] * inverse_sum);
  }
}

}  // namespace

void prepare_key_mask(const KeyMask& mask, int64_t batch, int64_t keys, void* bias, DType bias_dtype,
                      uint8_t* key_visible, int32_t* first_visible, cudaStream_t stream) {
  check(keys <= INT_MAX && batch <= INT_MAX,
        "attention key mask of " + std::to_string(batch) + " x " + std::to_string(keys) + " is too large");
  prepare_key_mask_kernel<<<static_cast<unsigned>(batch), kThreadsPerBlock, 0, stream>>>(
      mask, keys, bias, bias_dtype, key_visible, first_visible);
  CANVAS_CUDA_CHECK_LAUNCH();
}

void zero_unattended_rows(void* out, DType dtype, int64_t batch, int64_t heads, int64_t queries, int64_t keys,
                          int64_t value_dim, bool causal, const int32_t* first_visible, cudaStream_t stream) {
  const int64_t rows = batch * heads * queries;
  const unsigned blocks = grid_blocks(rows, kThreadsPerBlock);
  if (element_size(dtype) == 4) {
    zero_unattended_rows_kernel<uint32_t><<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<uint32_t*>(out), heads, queries, keys, value_dim, rows, causal, first_visible);
  } else {
    zero_unattended_rows_kernel<uint16_t><<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<uint16_t*>(out), heads, queries, keys, value_dim, rows, causal, first_visible);
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

void attention_fallback(const AttentionArgs& args, cudaStream_t stream) {
  check(args.head_dim <= kFallbackMaxHeadDim && args.value_dim <= kFallbackMaxHeadDim,
        "attention: the fallback kernel handles head dims up to " + std::to_string(kFallbackMaxHeadDim) +
            ", got " + std::to_string(args.head_dim) + " and " + std::to_string(args.value_dim));
  check(args.heads <= 65535 && args.batch <= 65535,
        "attention: the fallback kernel takes at most 65535 heads and "
        "samples");
  const dim3 grid(static_cast<unsigned>(ceil_div(args.queries, kWarpsPerBlock)),
                  static_cast<unsigned>(args.heads), static_cast<unsigned>(args.batch));
  const dim3 block(kWarpsPerBlock * kWarpSize);
  switch (args.dtype) {
    case DType::F32:
      attention_fallback_kernel<float><<<grid, block, 0, stream>>>(args);
      break;
    case DType::BF16:
      attention_fallback_kernel<__nv_bfloat16><<<grid, block, 0, stream>>>(args);
      break;
    case DType::F16:
      attention_fallback_kernel<__half><<<grid, block, 0, stream>>>(args);
      break;
    default:
      throw Error("attention: the fallback kernel has no " + std::string(dtype_name(args.dtype)) +
                  " version");
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

}  // namespace canvas::cuda
