// Normalizations and reductions along one axis for the CUDA backend, with the CPU backend's semantics
// (cpu_norm.cpp): two-pass biased variance, eps inside the square root, weight applied after
// normalizing. Row statistics accumulate in f32 with warp-shuffle trees.
//
// Launch shape of the row kernels: a row of the last axis is handled by blockDim.x threads (a multiple
// of the warp size, so no warp straddles two rows), and a block holds blockDim.y rows so that short rows
// (head_dim 128) still give 256-thread blocks. Blocks step through rows grid-stride.
#include "backend/cuda/cuda_kernel_support.cuh"

namespace canvas {

namespace {

using cuda::Pack;

constexpr int kWarpSize = 32;
constexpr int kMaxThreadsPerRow = 512;

// A norm weight or bias of any float dtype and stride; data is null when absent.
struct Param {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t stride = 1;
  __device__ float operator[](int64_t i) const { return cuda::load_float(data, dtype, i * stride); }
};

struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Combines `value` over the blockDim.x threads of this thread's row. Every thread of the block must call
// it, the same number of times: the cross-warp step synchronizes the block.
template <typename Combine>
__device__ float reduce_row(float value, Combine combine) {
  __shared__ float partials[32];
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  const int warps_per_row = blockDim.x / kWarpSize;
  if (warps_per_row == 1) return value;
  float* row_partials = partials + threadIdx.y * warps_per_row;
  __syncthreads();  // the previous call's readers are done with `partials`
  if (threadIdx.x % kWarpSize == 0) row_partials[threadIdx.x / kWarpSize] = value;
  __syncthreads();
  float total = row_partials[0];
  for (int w = 1; w < warps_per_row; ++w) total = combine(total, row_partials[w]);
  return total;
}

// Calls fn(i, x[i]) for this thread's share of a contiguous row, in 16-byte packs when kVectorized
// (the host checked length and alignment).
template <bool kVectorized, typename T, typename Fn>
__device__ __forceinline__ void visit_row(const T* row, int64_t length, Fn&& fn) {
  constexpr int kWidth = kVectorized ? Pack<T>::kSize : 1;
  for (int64_t i = static_cast<int64_t>(threadIdx.x) * kWidth; i < length;
       i += static_cast<int64_t>(blockDim.x) * kWidth) {
    if constexpr (kVectorized) {
      const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(row + i);
#pragma unroll
      for (int j = 0; j < kWidth; ++j) fn(i + j, cuda::to_float(pack.values[j]));
    } else {
      fn(i, cuda::to_float(row[i]));
    }
  }
}

// out_row[i] = fn(i, row[i]) for this thread's share of a contiguous row.
template <bool kVectorized, typename T, typename Fn>
__device__ __forceinline__ void transform_row(const T* row, T* out_row, int64_t length, Fn&& fn) {
  constexpr int kWidth = kVectorized ? Pack<T>::kSize : 1;
  for (int64_t i = static_cast<int64_t>(threadIdx.x) * kWidth; i < length;
       i += static_cast<int64_t>(blockDim.x) * kWidth) {
    if constexpr (kVectorized) {
      const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(row + i);
      Pack<T> result;
#pragma unroll
      for (int j = 0; j < kWidth; ++j)
        result.values[j] = cuda::from_float<T>(fn(i + j, cuda::to_float(pack.values[j])));
      *reinterpret_cast<Pack<T>*>(out_row + i) = result;
    } else {
      out_row[i] = cuda::from_float<T>(fn(i, cuda::to_float(row[i])));
    }
  }
}

enum class RowOp { LayerNorm, RmsNorm, L2Normalize, Softmax, VectorNorm };

// One kernel for every per-row op: they share the reduction skeleton and differ in the statistics.
// x and out are contiguous [rows, length] (out is [rows] for VectorNorm).
template <RowOp kOp, typename T, bool kVectorized>
__global__ void row_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int64_t length,
                           Param weight, Param bias, float eps) {
  const float inverse_length = 1.0f / static_cast<float>(length);
  // Blocks step through their rows grid-stride. The padding rows of the last step see an empty row but
  // still take part in the reductions, which synchronize the whole block.
  for (int64_t row_base = static_cast<int64_t>(blockIdx.x) * blockDim.y; row_base < rows;
       row_base += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t row = row_base + threadIdx.y;
    const bool active = row < rows;
    const int64_t n = active ? length : 0;
    const T* in_row = x + (active ? row : 0) * length;
    T* out_row = out + (active ? row : 0) * (kOp == RowOp::VectorNorm ? 1 : length);
    if constexpr (kOp == RowOp::LayerNorm) {
      float sum = 0.0f;
      visit_row<kVectorized>(in_row, n, [&](int64_t, float v) { sum += v; });
      const float mean = reduce_row(sum, Sum{}) * inverse_length;
      // Two passes: squared deviations avoid the cancellation of E[x^2] - E[x]^2.
      float deviations = 0.0f;
      visit_row<kVectorized>(in_row, n, [&](int64_t, float v) { deviations += (v - mean) * (v - mean); });
      const float inverse_std = 1.0f / sqrtf(reduce_row(deviations, Sum{}) * inverse_length + eps);
      transform_row<kVectorized>(in_row, out_row, n, [&](int64_t i, float v) {
        float value = (v - mean) * inverse_std;
        if (weight.data) value *= weight[i];
        if (bias.data) value += bias[i];
        return value;
      });
    } else if constexpr (kOp == RowOp::Softmax) {
      float maximum = -INFINITY;
      visit_row<kVectorized>(in_row, n, [&](int64_t, float v) { maximum = fmaxf(maximum, v); });
      maximum = reduce_row(maximum, Max{});
      // Subtracting the maximum keeps exp from overflowing.
      float sum = 0.0f;
      visit_row<kVectorized>(in_row, n, [&](int64_t, float v) { sum += expf(v - maximum); });
      const float inverse_sum = 1.0f / reduce_row(sum, Sum{});
      transform_row<kVectorized>(in_row, out_row, n,
                                 [&](int64_t, float v) { return expf(v - maximum) * inverse_sum; });
    } else {
      float squares = 0.0f;
      visit_row<kVectorized>(in_row, n, [&](int64_t, float v) { squares += v * v; });
      squares = reduce_row(squares, Sum{});
      if constexpr (kOp == RowOp::RmsNorm) {
        const float inverse_rms = 1.0f / sqrtf(squares * inverse_length + eps);
        // Normalize first, then weight, in Qwen2RMSNorm's order.
        transform_row<kVectorized>(in_row, out_row, n, [&](int64_t i, float v) {
          return weight.data ? v * inverse_rms * weight[i] : v * inverse_rms;
        });
      } else if constexpr (kOp == RowOp::L2Normalize) {
        const float inverse = 1.0f / fmaxf(sqrtf(squares), eps);
        transform_row<kVectorized>(in_row, out_row, n, [&](int64_t, float v) { return v * inverse; });
      } else {
        if (active && threadIdx.x == 0) *out_row = cuda::from_float<T>(sqrtf(squares));
      }
    }
  }
}

// x / max(||x||, eps) along the middle axis of a contiguous [outer, channels, inner] tensor, e.g. the
// channels of NCHW. One thread per (outer, inner) column: neighbouring threads read neighbouring
// addresses at every channel, so the walk down the channels stays coalesced.
template <typename T>
__global__ void l2_normalize_columns_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t outer,
                                            int64_t channels, int64_t inner, float eps) {
  const int64_t columns = outer * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; column < columns;
       column += step) {
    const int64_t o = column / inner;
    const int64_t base = o * channels * inner + (column - o * inner);
    float squares = 0.0f;
    for (int64_t c = 0; c < channels; ++c) {
      const float v = cuda::to_float(x[base + c * inner]);
      squares += v * v;
    }
    const float inverse = 1.0f / fmaxf(sqrtf(squares), eps);
    for (int64_t c = 0; c < channels; ++c) {
      out[base + c * inner] = cuda::from_float<T>(cuda::to_float(x[base + c * inner]) * inverse);
    }
  }
}

// ---- host side ----

Param param_of(const Tensor& tensor, const char* op, const char* what) {
  if (!tensor.defined()) return {};
  check(is_float(tensor.dtype()) && !is_block_quantized(tensor.dtype()),
        std::string(op) + ": " + what + " is stored as " + std::string(dtype_name(tensor.dtype())) +
            ", which the CUDA backend cannot widen element by element");
  return {tensor.raw_data(), tensor.dtype(), tensor.strides()[0]};
}

// Runs row op kOp over the last axis of x into out (same dtype; out [..., 1] for VectorNorm).
template <RowOp kOp>
void run_rows(CudaBackend& backend, const Tensor& x, Tensor& out, const Param& weight, const Param& bias,
              float eps) {
  cuda::check_on_device(x, backend.device(), "normalization");
  check(x.dtype() == out.dtype(), "normalization output dtype differs from its input's");
  if (out.numel() == 0) return;
  const int64_t length = x.dim(-1);
  if (length == 0) {
    // Only vector_norm has elements then: the norms of empty rows, which are zero.
    backend.fill_zero(out);
    return;
  }
  const int64_t rows = x.numel() / length;
  cuda::DeviceGuard guard(backend.device().index);
  const Tensor input = cuda::contiguous_kernel_input(backend, x);
  cuda::KernelOutput result(backend, out);
  cuda::dispatch_kernel_dtype(input.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* in_data = static_cast<const T*>(input.raw_data());
    T* out_data = static_cast<T*>(result.tensor().raw_data());
    const bool out_is_rows = kOp != RowOp::VectorNorm;
    const bool vectorized = length % Pack<T>::kSize == 0 && reinterpret_cast<uintptr_t>(in_data) % 16 == 0 &&
                            (!out_is_rows || reinterpret_cast<uintptr_t>(out_data) % 16 == 0);
    const int64_t units = vectorized ? length / Pack<T>::kSize : length;
    const int threads_per_row = static_cast<int>(
        std::clamp<int64_t>(cuda::ceil_div(units, kWarpSize) * kWarpSize, kWarpSize, kMaxThreadsPerRow));
    const int rows_per_block = std::max(1, cuda::kThreadsPerBlock / threads_per_row);
    const dim3 block(threads_per_row, rows_per_block);
    const unsigned blocks = cuda::grid_blocks(rows, rows_per_block);
    cudaStream_t stream = backend.context().compute_stream;
    if (vectorized) {
      row_kernel<kOp, T, true>
          <<<blocks, block, 0, stream>>>(in_data, out_data, rows, length, weight, bias, eps);
    } else {
      row_kernel<kOp, T, false>
          <<<blocks, block, 0, stream>>>(in_data, out_data, rows, length, weight, bias, eps);
    }
    CANVAS_CUDA_CHECK_LAUNCH();
  });
  result.finish();
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                             Tensor& out) {
  run_rows<RowOp::LayerNorm>(*this, x, out, param_of(weight, "layer_norm", "weight"),
                             param_of(bias, "layer_norm", "bias"), eps);
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  run_rows<RowOp::RmsNorm>(*this, x, out, param_of(weight, "rms_norm", "weight"), {}, eps);
}

void CudaBackend::softmax(const Tensor& x, Tensor& out) {
  run_rows<RowOp::Softmax>(*this, x, out, {}, {}, 0.0f);
}

void CudaBackend::vector_norm(const Tensor& x, Tensor& out) {
  run_rows<RowOp::VectorNorm>(*this, x, out, {}, {}, 0.0f);
}

void CudaBackend::l2_normalize(const Tensor& x, int axis, float eps, Tensor& out) {
  if (axis == x.ndim() - 1) {
    run_rows<RowOp::L2Normalize>(*this, x, out, {}, {}, eps);
    return;
  }
  cuda::check_on_device(x, device(), "l2_normalize");
  check(x.dtype() == out.dtype(), "l2_normalize output dtype differs from its input's");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  const Tensor input = cuda::contiguous_kernel_input(*this, x);
  cuda::KernelOutput result(*this, out);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= x.dim(i);
  for (int i = axis + 1; i < x.ndim(); ++i) inner *= x.dim(i);
  const int64_t channels = x.dim(axis);
  cuda::dispatch_kernel_dtype(input.dtype(), [&](auto tag) {
    using T = decltype(tag);
    l2_normalize_columns_kernel<T><<<cuda::grid_blocks(outer * inner, cuda::kThreadsPerBlock),
                                     cuda::kThreadsPerBlock, 0, context_->compute_stream>>>(
        static_cast<const T*>(input.raw_data()), static_cast<T*>(result.tensor().raw_data()), outer, channels,
        inner, eps);
    CANVAS_CUDA_CHECK_LAUNCH();
  });
  result.finish();
}

}  // namespace canvas
