// Position and lookup kernels for the CUDA backend: rotary embeddings, embedding-table lookups and 2x
// nearest-neighbour upsampling.
#include "backend/cuda/cuda_kernel_support.cuh"
#include "util/error.h"

namespace canvas {

namespace {

// Element strides of the four axes of x [B, L, H, D].
struct RopeInput {
  int64_t batch, length, head, dim;
};
// cos and sin [B, L, D/2] (batch possibly stride 0), each of any float dtype.
struct AngleTable {
  const void* data;
  DType dtype;
  int64_t batch, length, pair;
  __device__ float at(int64_t b, int64_t l, int64_t i) const {
    return cuda::load_float(data, dtype, b * batch + l * length + i * pair);
  }
};

// Rotates each pair (a, b) of x by its angle: (a cos - b sin, a sin + b cos). Pairs are (x[2i], x[2i+1])
// when interleaved, (x[i], x[i + D/2]) when half-split. One block per (b, l) position, grid-stride; its
// threads cover the heads * D/2 pairs of the position, so every angle is read from cache after the first
// head. x may be strided; out is contiguous.
template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, RopeInput x_strides, AngleTable cos, AngleTable sin,
                            T* __restrict__ out, int64_t batch, int64_t length, int heads, int pairs,
                            bool interleaved) {
  const int pairs_per_position = heads * pairs;
  const int64_t x_pair_step = (interleaved ? 1 : pairs) * x_strides.dim;
  const int64_t out_pair_step = interleaved ? 1 : pairs;
  for (int64_t position = blockIdx.x; position < batch * length; position += gridDim.x) {
    const int64_t b = position / length, l = position - b * length;
    const T* x_position = x + b * x_strides.batch + l * x_strides.length;
    T* out_position = out + position * pairs_per_position * 2;
    for (int j = threadIdx.x; j < pairs_per_position; j += blockDim.x) {
      const int h = j / pairs, i = j - h * pairs;
      const int64_t first = interleaved ? 2 * i : i;
      const T* x_pair = x_position + h * x_strides.head + first * x_strides.dim;
      const float a = cuda::to_float(x_pair[0]), c = cuda::to_float(x_pair[x_pair_step]);
      const float cosine = cos.at(b, l, i), sine = sin.at(b, l, i);
      T* out_pair = out_position + static_cast<int64_t>(h) * pairs * 2 + first;
      out_pair[0] = cuda::from_float<T>(a * cosine - c * sine);
      out_pair[out_pair_step] = cuda::from_float<T>(a * sine + c * cosine);
    }
  }
}

// out[n, :] = table[ids[n], :] converted to out's dtype. One block per id, grid-stride; threads cover the
// row. An id outside the table writes a zero row instead of reading out of bounds, and is reported
// through `bad`: bad[0] counts them, bad[1] keeps one of them for the message.
template <typename Id>
__global__ void embedding_kernel(const Id* __restrict__ ids, int64_t count, const void* table,
                                 DType table_dtype, int64_t table_rows, int64_t row_stride,
                                 int64_t column_stride, int64_t dim, void* out, DType out_dtype,
                                 unsigned long long* bad) {
  for (int64_t n = blockIdx.x; n < count; n += gridDim.x) {
    const int64_t id = static_cast<int64_t>(ids[n]);
    const bool valid = id >= 0 && id < table_rows;
    if (!valid && threadIdx.x == 0) {
      atomicAdd(&bad[0], 1ull);
      bad[1] = static_cast<unsigned long long>(id);
    }
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      const float value =
          valid ? cuda::load_float(table, table_dtype, id * row_stride + d * column_stride) : 0.0f;
      cuda::store_float(out, out_dtype, n * dim + d, value);
    }
  }
}

// out[p, 2h + dy, 2w + dx] = x[p, h, w] over planes p of a contiguous [planes, H, W] input. One thread
// per input element: input row r = p * H + h lands on output rows 2r and 2r + 1, so a single division
// by W locates everything.
template <typename Word, typename Index>
__global__ void upsample_nearest2x_kernel(const Word* __restrict__ x, Word* __restrict__ out, Index count,
                                          Index width) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += step) {
    const Index i = static_cast<Index>(e);
    const Index r = i / width, w = i - r * width;
    const Word value = x[i];
    Word* top = out + (static_cast<int64_t>(r) * 2 * width + w) * 2;
    top[0] = value;
    top[1] = value;
    top[2 * width] = value;
    top[2 * width + 1] = value;
  }
}

template <typename Word>
void launch_upsample(const Tensor& input, Tensor& out, cudaStream_t stream) {
  const int64_t count = input.numel();
  const int64_t width = input.dim(3);
  const unsigned blocks = cuda::grid_blocks(count, cuda::kThreadsPerBlock);
  const Word* in = static_cast<const Word*>(input.raw_data());
  Word* result = static_cast<Word*>(out.raw_data());
  if (out.numel() <= INT_MAX) {
    upsample_nearest2x_kernel<Word, int32_t><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(
        in, result, static_cast<int32_t>(count), static_cast<int32_t>(width));
  } else {
    upsample_nearest2x_kernel<Word, int64_t>
        <<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(in, result, count, width);
  }
}

AngleTable angle_table(const Tensor& t) {
  check(is_float(t.dtype()) && !is_block_quantized(t.dtype()),
        "rope: cos and sin must be a plain float dtype, got " + std::string(dtype_name(t.dtype())));
  return {t.raw_data(), t.dtype(), t.strides()[0], t.strides()[1], t.strides()[2]};
}

}  // namespace

void CudaBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
                       Tensor& out) {
  cuda::check_on_device(x, device(), "rope");
  cuda::check_on_device(cos, device(), "rope");
  cuda::check_on_device(sin, device(), "rope");
  check(x.ndim() == 4 && x.dim(3) % 2 == 0 && cos.ndim() == 3 && sin.ndim() == 3 &&
            out.shape() == x.shape() && out.dtype() == x.dtype(),
        "rope takes x [B, L, H, D] and cos, sin [B, L, D/2]");
  if (out.numel() == 0) return;
  const int64_t batch = x.dim(0), length = x.dim(1), heads = x.dim(2), pairs = x.dim(3) / 2;
  check(heads * pairs <= INT_MAX, "rope: too many heads * pairs per position");
  cuda::DeviceGuard guard(device_index_);
  // x keeps its strides (e.g. a view of a fused QKV projection) unless its dtype has no kernel.
  const Tensor input = cuda::is_kernel_dtype(x.dtype()) ? x : cuda::contiguous_kernel_input(*this, x);
  cuda::KernelOutput result(*this, out);
  const RopeInput strides{input.strides()[0], input.strides()[1], input.strides()[2], input.strides()[3]};
  const int threads =
      static_cast<int>(std::min<int64_t>(cuda::ceil_div(heads * pairs, 32) * 32, cuda::kThreadsPerBlock));
  const unsigned blocks = static_cast<unsigned>(std::min(batch * length, cuda::kMaxGridBlocks));
  cuda::dispatch_kernel_dtype(input.dtype(), [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<T><<<blocks, threads, 0, context_->compute_stream>>>(
        static_cast<const T*>(input.raw_data()), strides, angle_table(cos), angle_table(sin),
        static_cast<T*>(result.tensor().raw_data()), batch, length, static_cast<int>(heads),
        static_cast<int>(pairs), layout == ops::RopeLayout::Interleaved);
    CANVAS_CUDA_CHECK_LAUNCH();
  });
  result.finish();
}

void CudaBackend::embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  cuda::check_on_device(ids, device(), "embedding");
  cuda::check_on_device(table, device(), "embedding");
  check(ids.dtype() == DType::I32 || ids.dtype() == DType::I64, "embedding ids must be i32 or i64");
  check(table.ndim() == 2, "embedding table must be [V, D]");
  check(is_float(table.dtype()) && !is_block_quantized(table.dtype()),
        "embedding: the table is stored as " + std::string(dtype_name(table.dtype())) +
            ", which the CUDA backend cannot widen element by element");
  check(is_float(out.dtype()) && !is_block_quantized(out.dtype()) && out.is_contiguous(),
        "embedding output must be a contiguous plain float tensor");
  const int64_t count = ids.numel(), dim = table.dim(1);
  if (count == 0) return;
  cuda::DeviceGuard guard(device_index_);
  cudaStream_t stream = context_->compute_stream;
  Tensor contiguous_ids = ids;
  if (!ids.is_contiguous()) {
    contiguous_ids = cuda::scratch_tensor(ids.shape(), ids.dtype(), device());
    copy(ids, contiguous_ids);
  }
  Tensor bad = cuda::scratch_tensor({2}, DType::I64, device());
  CANVAS_CUDA_CHECK(cudaMemsetAsync(bad.raw_data(), 0, bad.nbytes(), stream));
  const unsigned blocks = cuda::grid_blocks(count, 1);
  const int threads =
      static_cast<int>(std::clamp<int64_t>(cuda::ceil_div(dim, 32) * 32, 32, cuda::kThreadsPerBlock));
  auto* bad_data = static_cast<unsigned long long*>(bad.raw_data());
  if (ids.dtype() == DType::I32) {
    embedding_kernel<int32_t><<<blocks, threads, 0, stream>>>(
        contiguous_ids.data<int32_t>(), count, table.raw_data(), table.dtype(), table.dim(0),
        table.strides()[0], table.strides()[1], dim, out.raw_data(), out.dtype(), bad_data);
  } else {
    embedding_kernel<int64_t><<<blocks, threads, 0, stream>>>(
        contiguous_ids.data<int64_t>(), count, table.raw_data(), table.dtype(), table.dim(0),
        table.strides()[0], table.strides()[1], dim, out.raw_data(), out.dtype(), bad_data);
  }
  CANVAS_CUDA_CHECK_LAUNCH();
  // The caller learns about bad ids now rather than from garbage later; embedding runs once per prompt,
  // so the wait costs little.
  int64_t report[2] = {0, 0};
  CANVAS_CUDA_CHECK(cudaMemcpyAsync(report, bad.raw_data(), sizeof(report), cudaMemcpyDeviceToHost, stream));
  CANVAS_CUDA_CHECK(cudaStreamSynchronize(stream));
  check(report[0] == 0, "embedding: id " + std::to_string(report[1]) + " is outside the table of " +
                            std::to_string(table.dim(0)) + " rows (" + std::to_string(report[0]) +
                            " ids out of range)");
}

void CudaBackend::upsample_nearest2x(const Tensor& x, Tensor& out) {
  cuda::check_on_device(x, device(), "upsample_nearest2x");
  check(x.ndim() == 4 && out.dtype() == x.dtype() && out.is_contiguous() &&
            out.shape() == Shape({x.dim(0), x.dim(1), x.dim(2) * 2, x.dim(3) * 2}),
        "upsample_nearest2x takes [N, C, H, W] into [N, C, 2H, 2W] of the same dtype");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  // A pure move of elements: any dtype works by its width, so only the layout needs normalizing.
  Tensor input = x;
  if (!x.is_contiguous()) {
    input = cuda::scratch_tensor(x.shape(), x.dtype(), device());
    copy(x, input);
  }
  cudaStream_t stream = context_->compute_stream;
  switch (element_size(x.dtype())) {
    case 1:
      launch_upsample<uint8_t>(input, out, stream);
      break;
    case 2:
      launch_upsample<uint16_t>(input, out, stream);
      break;
    case 4:
      launch_upsample<uint32_t>(input, out, stream);
      break;
    default:
      launch_upsample<uint64_t>(input, out, stream);
      break;
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

}  // namespace canvas
