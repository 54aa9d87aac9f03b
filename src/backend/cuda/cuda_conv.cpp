// 2-D convolution (NCHW, one group) through cuDNN.
//
// cuDNN pads symmetrically, so an asymmetric padding (the VAE's stride-2 downsampling pads only bottom
// and right) is materialized into a zero-filled scratch tensor first. The algorithm for each shape is
// chosen once by cuDNN's heuristics (no benchmarking, no synchronization) and cached with its
// descriptors. f32 stays exact for parity checks: FMA math only (no TF32) and no FFT or Winograd
// algorithms. bf16/f16 accumulate in f32; if cuDNN has no kernel for them, the convolution runs in f32
// on widened copies instead.
#include <algorithm>
#include <array>
#include <climits>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/plan_cache.h"

namespace canvas {

namespace {

// Algorithms wanting more workspace are passed over for the next-best one: the workspace is kept for the
// life of the process, and the memory planner counts it.
constexpr size_t kMaxConvWorkspaceBytes = size_t{256} << 20;
// Plans kept per process (the VAE sees one set of shapes per image size); past this, the least recently
// used one goes.
constexpr size_t kMaxCachedConvPlans = 1024;

cudnnDataType_t cudnn_data_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return CUDNN_DATA_FLOAT;
    case DType::BF16:
      return CUDNN_DATA_BFLOAT16;
    case DType::F16:
      return CUDNN_DATA_HALF;
    default:
      throw Error("conv2d: cuDNN has no " + std::string(dtype_name(dtype)) + " convolution");
  }
}

struct CudnnDeleter {
  void operator()(cudnnTensorStruct* desc) const { cudnnDestroyTensorDescriptor(desc); }
  void operator()(cudnnFilterStruct* desc) const { cudnnDestroyFilterDescriptor(desc); }
  void operator()(cudnnConvolutionStruct* desc) const { cudnnDestroyConvolutionDescriptor(desc); }
};

// The convolution as cuDNN sees it: the (possibly pre-padded) input and symmetric padding.
struct ConvShape {
  DType dtype;
  int64_t batch, channels, height, width;
  int64_t out_channels, kernel_height, kernel_width;
  int64_t stride, pad_height, pad_width;
  int64_t out_height, out_width;
};

struct ConvPlan {
  std::unique_ptr<cudnnTensorStruct, CudnnDeleter> input, output;
  std::unique_ptr<cudnnFilterStruct, CudnnDeleter> filter;
  std::unique_ptr<cudnnConvolutionStruct, CudnnDeleter> convolution;
  cudnnConvolutionFwdAlgo_t algorithm = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace_bytes = 0;
  bool usable = false;  // false: cuDNN offered no acceptable algorithm
};

int as_int(int64_t value) {
  check(value <= INT_MAX, "conv2d: extent " + std::to_string(value) + " exceeds cuDNN's int range");
  return static_cast<int>(value);
}

// TF32 and the transform-based algorithms lose about three decimal digits, too much for f32 parity.
bool acceptable_for(DType dtype, const cudnnConvolutionFwdAlgoPerf_t& candidate) {
  if (candidate.status != CUDNN_STATUS_SUCCESS || candidate.memory > kMaxConvWorkspaceBytes) return false;
  if (dtype != DType::F32) return true;
  const bool tensor_cores = candidate.mathType == CUDNN_TENSOR_OP_MATH ||
                            candidate.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
  const bool transform = candidate.algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT ||
                         candidate.algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
                         candidate.algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
                         candidate.algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
  return !tensor_cores && !transform;
}

std::shared_ptr<ConvPlan> build_plan(cudnnHandle_t handle, const ConvShape& s) {
  auto plan = std::make_shared<ConvPlan>();
  const cudnnDataType_t type = cudnn_data_type(s.dtype);
  cudnnTensorDescriptor_t input = nullptr, output = nullptr;
  cudnnFilterDescriptor_t filter = nullptr;
  cudnnConvolutionDescriptor_t convolution = nullptr;
  CANVAS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&input));
  plan->input.reset(input);
  CANVAS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&output));
  plan->output.reset(output);
  CANVAS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
  plan->filter.reset(filter);
  CANVAS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&convolution));
  plan->convolution.reset(convolution);

  CANVAS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(input, CUDNN_TENSOR_NCHW, type, as_int(s.batch),
                                                as_int(s.channels), as_int(s.height), as_int(s.width)));
  CANVAS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(filter, type, CUDNN_TENSOR_NCHW, as_int(s.out_channels),
                                                as_int(s.channels), as_int(s.kernel_height),
                                                as_int(s.kernel_width)));
  CANVAS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(convolution, as_int(s.pad_height), as_int(s.pad_width),
                                                     as_int(s.stride), as_int(s.stride), 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CANVAS_CUDNN_CHECK(cudnnSetConvolutionMathType(
      convolution, s.dtype == DType::F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
  std::array<int, 4> produced{};
  CANVAS_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(convolution, input, filter, &produced[0],
                                                           &produced[1], &produced[2], &produced[3]));
  check(produced == std::array<int, 4>{as_int(s.batch), as_int(s.out_channels), as_int(s.out_height),
                                       as_int(s.out_width)},
        "conv2d: cuDNN computes a different output shape than the op");
  CANVAS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(output, CUDNN_TENSOR_NCHW, type, produced[0], produced[1],
                                                produced[2], produced[3]));

  int candidate_count = 0;
  CANVAS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &candidate_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> candidates(static_cast<size_t>(std::max(candidate_count, 1)));
  int returned = 0;
  CANVAS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, input, filter, convolution, output,
                                                            static_cast<int>(candidates.size()), &returned,
                                                            candidates.data()));
  for (int i = 0; i < returned; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& candidate = candidates[static_cast<size_t>(i)];
    if (!acceptable_for(s.dtype, candidate)) continue;
    CANVAS_CUDNN_CHECK(cudnnSetConvolutionMathType(convolution, candidate.mathType));
    plan->algorithm = candidate.algo;
    plan->workspace_bytes = candidate.memory;
    plan->usable = true;
    break;
  }
  return plan;
}

using ConvKey = std::array<int64_t, 14>;

ConvKey key_of(int device, const ConvShape& s) {
  return {device,         static_cast<int64_t>(s.dtype),
          s.batch,        s.channels,
          s.height,       s.width,
          s.out_channels, s.kernel_height,
          s.kernel_width, s.stride,
          s.pad_height,   s.pad_width,
          s.out_height,   s.out_width};
}

cuda::PlanCache<ConvKey, ConvPlan>& plan_cache() {
  static cuda::PlanCache<ConvKey, ConvPlan> cache(kMaxCachedConvPlans);
  return cache;
}

// Runs the convolution on cuDNN. Returns false, with out untouched, when cuDNN has no usable algorithm
// or refuses the call; other failures throw.
bool run_convolution(CudaContext& context, const ConvShape& shape, const Tensor& input, const Tensor& filter,
                     Tensor& out) {
  const std::shared_ptr<ConvPlan> plan = plan_cache().find_or_build(
      key_of(context.device, shape), [&] { return build_plan(context.cudnn, shape); });
  if (!plan->usable) return false;
  cudaStream_t current = nullptr;
  CANVAS_CUDNN_CHECK(cudnnGetStream(context.cudnn, &current));
  if (current != context.compute_stream)
    CANVAS_CUDNN_CHECK(cudnnSetStream(context.cudnn, context.compute_stream));
  void* workspace =
      plan->workspace_bytes > 0 ? context.workspace(static_cast<int64_t>(plan->workspace_bytes)) : nullptr;
  const float alpha = 1.0f, beta = 0.0f;
  const cudnnStatus_t status =
      cudnnConvolutionForward(context.cudnn, &alpha, plan->input.get(), input.raw_data(), plan->filter.get(),
                              filter.raw_data(), plan->convolution.get(), plan->algorithm, workspace,
                              plan->workspace_bytes, &beta, plan->output.get(), out.raw_data());
  if (status == CUDNN_STATUS_NOT_SUPPORTED || status == CUDNN_STATUS_BAD_PARAM) {
    // Later calls of this shape take the f32 route directly.
    plan_cache().replace(key_of(context.device, shape), std::make_shared<ConvPlan>());
    return false;
  }
  if (status != CUDNN_STATUS_SUCCESS)
    throw_cudnn_error(status, "cudnnConvolutionForward", __FILE__, __LINE__);
  return true;
}

// A contiguous, 16-byte aligned scratch copy of t in `dtype`, or t itself when it already is one.
Tensor dense_in(CudaBackend& backend, const Tensor& t, DType dtype) {
  if (t.dtype() == dtype && t.is_contiguous() && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0)
    return t;
  Tensor dense = cuda::scratch_tensor(t.shape(), dtype, backend.device());
  backend.copy(t, dense);
  return dense;
}

}  // namespace

void CudaBackend::conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const ops::Conv2dParams& params, Tensor& out) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&x, &weight, &bias, &out}) {
    if (t->defined()) cuda::check_on_device(*t, device(), "conv2d");
  }
  const DType dtype = out.dtype();
  check(cuda::is_kernel_dtype(dtype),
        "conv2d: the CUDA backend computes in f32, bf16 or f16, got " + std::string(dtype_name(dtype)));
  check(!is_block_quantized(weight.dtype()) && (!bias.defined() || !is_block_quantized(bias.dtype())),
        "conv2d: the CUDA backend cannot compute with block-quantized weights yet");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);

  ConvShape shape{.dtype = dtype,
                  .batch = x.dim(0),
                  .channels = x.dim(1),
                  .height = x.dim(2),
                  .width = x.dim(3),
                  .out_channels = weight.dim(0),
                  .kernel_height = weight.dim(2),
                  .kernel_width = weight.dim(3),
                  .stride = params.stride,
                  .pad_height = params.pad_top,
                  .pad_width = params.pad_left,
                  .out_height = out.dim(2),
                  .out_width = out.dim(3)};
  Tensor input;
  if (params.pad_top == params.pad_bottom && params.pad_left == params.pad_right) {
    input = dense_in(*this, x, dtype);
  } else {
    shape.height += params.pad_top + params.pad_bottom;
    shape.width += params.pad_left + params.pad_right;
    shape.pad_height = shape.pad_width = 0;
    input = cuda::scratch_tensor({shape.batch, shape.channels, shape.height, shape.width}, dtype, device());
    fill_zero(input);
    Tensor interior = input.slice(2, params.pad_top, params.pad_top + x.dim(2))
                          .slice(3, params.pad_left, params.pad_left + x.dim(3));
    copy(x, interior);
  }
  const Tensor filter = dense_in(*this, weight, dtype);

  if (!run_convolution(*context_, shape, input, filter, out)) {
    check(dtype != DType::F32, "conv2d: cuDNN has no f32 algorithm for input " + shape_str(x.shape()) +
                                   " and weight " + shape_str(weight.shape()));
    ConvShape widened = shape;
    widened.dtype = DType::F32;
    Tensor result = cuda::scratch_tensor(out.shape(), DType::F32, device());
    check(run_convolution(*context_, widened, dense_in(*this, input, DType::F32),
                          dense_in(*this, filter, DType::F32), result),
          "conv2d: cuDNN has no algorithm for input " + shape_str(x.shape()) + " and weight " +
              shape_str(weight.shape()));
    copy(result, out);
  }
  if (bias.defined()) {
    // Adding in place is safe: every output element depends only on the same element of out.
    binary(BinaryOp::Add, out, Tensor::strided_view(bias, out.shape(), {0, bias.strides()[0], 0, 0}), out);
  }
}

}  // namespace canvas
