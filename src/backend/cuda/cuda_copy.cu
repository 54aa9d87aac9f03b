// Copies, casts, zero fills and host<->device transfers for the CUDA backend.
#include "backend/cuda/cuda_kernel_support.cuh"
#include "util/error.h"

namespace canvas {

namespace {

using cuda::StridedLayout;

// dst = src element by element for one dtype: a pure move of `Word`-sized elements between strided
// layouts (operand 0 is dst, 1 is src). One thread per run of elements, see for_each_strided.
template <typename Word, typename Index>
__global__ void copy_strided_kernel(StridedLayout<2> layout, const Word* __restrict__ src,
                                    Word* __restrict__ dst, int64_t count, Index run) {
  cuda::for_each_strided(layout, count, run,
                         [&](const Index(&offsets)[2]) { dst[offsets[0]] = src[offsets[1]]; });
}

// dst = convert(src) between any two plain dtypes, with the CPU's conversion rules.
template <typename Index>
__global__ void convert_strided_kernel(StridedLayout<2> layout, const void* __restrict__ src, DType src_dtype,
                                       void* __restrict__ dst, DType dst_dtype, int64_t count, Index run) {
  cuda::for_each_strided(layout, count, run, [&](const Index(&offsets)[2]) {
    cuda::convert_element(src, src_dtype, offsets[1], dst, dst_dtype, offsets[0]);
  });
}

// Zeroes the elements of a strided view (operand 0). All-zero bytes are zero in every dtype.
template <typename Word, typename Index>
__global__ void zero_strided_kernel(StridedLayout<1> layout, Word* __restrict__ dst, int64_t count,
                                    Index run) {
  cuda::for_each_strided(layout, count, run, [&](const Index(&offsets)[1]) { dst[offsets[0]] = Word{0}; });
}

template <typename Index>
void launch_copy(const StridedLayout<2>& layout, const Tensor& src, Tensor& dst, cudaStream_t stream) {
  const int64_t count = dst.numel();
  const Index run = static_cast<Index>(cuda::run_length(layout));
  const unsigned blocks = cuda::grid_blocks(count / run, cuda::kThreadsPerBlock);
  const void* in = src.raw_data();
  void* out = dst.raw_data();
  if (src.dtype() != dst.dtype()) {
    convert_strided_kernel<Index><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(layout, in, src.dtype(), out,
                                                                                 dst.dtype(), count, run);
    return;
  }
  switch (element_size(src.dtype())) {
    case 1:
      copy_strided_kernel<uint8_t, Index><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(
          layout, static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out), count, run);
      break;
    case 2:
      copy_strided_kernel<uint16_t, Index><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(
          layout, static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), count, run);
      break;
    case 4:
      copy_strided_kernel<uint32_t, Index><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(
          layout, static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out), count, run);
      break;
    default:
      copy_strided_kernel<uint64_t, Index><<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(
          layout, static_cast<const uint64_t*>(in), static_cast<uint64_t*>(out), count, run);
      break;
  }
}

template <typename Index>
void launch_zero(const StridedLayout<1>& layout, Tensor& dst, cudaStream_t stream) {
  const int64_t count = dst.numel();
  const Index run = static_cast<Index>(cuda::run_length(layout));
  const unsigned blocks = cuda::grid_blocks(count / run, cuda::kThreadsPerBlock);
  void* out = dst.raw_data();
  switch (element_size(dst.dtype())) {
    case 1:
      zero_strided_kernel<uint8_t, Index>
          <<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(layout, static_cast<uint8_t*>(out), count, run);
      break;
    case 2:
      zero_strided_kernel<uint16_t, Index>
          <<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(layout, static_cast<uint16_t*>(out), count, run);
      break;
    case 4:
      zero_strided_kernel<uint32_t, Index>
          <<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(layout, static_cast<uint32_t*>(out), count, run);
      break;
    default:
      zero_strided_kernel<uint64_t, Index>
          <<<blocks, cuda::kThreadsPerBlock, 0, stream>>>(layout, static_cast<uint64_t*>(out), count, run);
      break;
  }
}

bool is_page_locked(const void* host_pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, host_pointer) != cudaSuccess) {
    // Older drivers report plain pageable memory as an error; it is not page-locked either way.
    (void)cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

}  // namespace

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  cuda::check_on_device(src, device(), "copy");
  cuda::check_on_device(dst, device(), "copy");
  check(src.shape() == dst.shape(),
        "copy of shape " + shape_str(src.shape()) + " into " + shape_str(dst.shape()));
  if (src.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  cudaStream_t stream = context_->compute_stream;
  const bool contiguous = src.is_contiguous() && dst.is_contiguous();
  if (is_block_quantized(src.dtype()) || is_block_quantized(dst.dtype())) {
    check(src.dtype() == dst.dtype() && contiguous,
          "block-quantized tensors can only be copied whole, into the same dtype");
  }
  if (src.dtype() == dst.dtype() && contiguous) {
    CANVAS_CUDA_CHECK(
        cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const StridedLayout<2> layout = cuda::collapse_layout<2>(dst.shape(), {&dst.strides(), &src.strides()});
  if (cuda::fits_int32(layout)) {
    launch_copy<int32_t>(layout, src, dst, stream);
  } else {
    launch_copy<int64_t>(layout, src, dst, stream);
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

void CudaBackend::fill_zero(Tensor& dst) {
  cuda::check_on_device(dst, device(), "fill_zero");
  if (dst.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  cudaStream_t stream = context_->compute_stream;
  if (dst.is_contiguous()) {
    CANVAS_CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), 0, dst.nbytes(), stream));
    return;
  }
  const StridedLayout<1> layout = cuda::collapse_layout<1>(dst.shape(), {&dst.strides()});
  if (cuda::fits_int32(layout)) {
    launch_zero<int32_t>(layout, dst, stream);
  } else {
    launch_zero<int64_t>(layout, dst, stream);
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

// Copies run on the compute stream, so they are ordered after the kernels that produce the source and
// before the kernels that consume the destination. transfer() returns once the caller may reuse or
// free the host side:
//  - device -> host: the host reads the values as soon as we return, so we wait for the copy.
//  - host -> device from pageable memory: cudaMemcpyAsync returns after staging the source, so the
//    host buffer is already free to go and no wait is needed.
//  - host -> device from page-locked memory: the DMA reads the host buffer after we return, and the
//    caller may free or refill it at once, so we wait.
//  - device -> device across GPUs: the source device's queued work must finish before the copy reads
//    it, and the source may be freed (in its own device's stream order) right after we return.
void CudaBackend::transfer(const Tensor& src, Tensor& dst) {
  check(src.dtype() == dst.dtype() && src.shape() == dst.shape(),
        "transfer needs tensors of one shape and dtype");
  check(src.device() == device() || dst.device() == device(),
        "the " + device().str() + " backend cannot transfer " + src.device().str() + " -> " +
            dst.device().str());
  const int64_t bytes = src.nbytes();
  if (bytes == 0) return;
  check(src.is_contiguous() && dst.is_contiguous(), "transfer needs contiguous tensors");
  cuda::DeviceGuard guard(device_index_);
  cudaStream_t stream = context_->compute_stream;
  if (src.device().is_cuda() && dst.device().is_cuda()) {
    if (src.device() != dst.device()) {
      dynamic_cast<CudaBackend&>(backend_for(src.device())).synchronize();
    }
    CANVAS_CUDA_CHECK(cudaMemcpyPeerAsync(dst.raw_data(), dst.device().index, src.raw_data(),
                                          src.device().index, bytes, stream));
    CANVAS_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  if (src.device().is_cpu()) {
    CANVAS_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyHostToDevice, stream));
    if (is_page_locked(src.raw_data())) CANVAS_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  CANVAS_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDeviceToHost, stream));
  CANVAS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace canvas
