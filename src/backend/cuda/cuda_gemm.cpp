// Linear layers and batched matmul through cuBLASLt.
//
// Everything is phrased as one column-major product D = op(A) op(B) (+ bias per row of D): a row-major
// out [M, N] = a [M, K] b [K, N] is the column-major D = out^T = b^T a^T, so A comes from b and B from
// a, and no operand is ever transposed in memory. The matmul descriptor, layouts and heuristic choice
// of each distinct problem are built once and cached, so a steady-state step issues no heuristic query.
//
// Precision: f32 runs with CUBLAS_COMPUTE_32F (never TF32), bf16/f16 accumulate in f32. FP8: e4m3
// weights with bf16 activations quantize the activations per tensor (cuda_fp8.cu) and run cuBLASLt's
// FP8 GEMM with a bf16 output. Weights carry no scale tensor yet, so their e4m3 values are taken as the
// weight values (an A scale of 1); per-tensor or per-row weight scales from the planner will replace
// that A scale pointer (with CUBLASLT_MATMUL_DESC_A_SCALE_MODE for per-row).
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_dequantize.h"
#include "backend/cuda/cuda_fp8.h"
#include "backend/cuda/plan_cache.h"

namespace canvas {

namespace {

// NVIDIA's recommendation for Hopper; larger buys nothing for the GEMM shapes of these models.
constexpr uint64_t kMaxGemmWorkspaceBytes = uint64_t{32} << 20;
// A long-running process that sees many text lengths must not grow the cache without bound; past this
// many plans the least recently used one goes (rebuilding a plan costs one heuristic query).
constexpr size_t kMaxCachedPlans = 4096;

bool is_gemm_dtype(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::F16:
      return CUDA_R_16F;
    case DType::F8_E4M3:
      return CUDA_R_8F_E4M3;
    default:
      throw Error("cuBLASLt GEMM on unsupported dtype " + std::string(dtype_name(dtype)));
  }
}

// cuBLASLt picks kernels by how far each pointer is aligned, up to 256 bytes.
int64_t pointer_alignment(const void* pointer) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  if (address == 0) return 256;
  return static_cast<int64_t>(std::min<uintptr_t>(address & (~address + 1), 256));
}

// One operand of the column-major product: the matrix as stored (rows x cols, leading dimension ld),
// whether the product reads it transposed, and the element step between batch entries (0 broadcasts).
struct MatrixOperand {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, ld = 0;
  bool transposed = false;
  int64_t batch_stride = 0;
};

// The operand whose op() is the transpose of the row-major logical matrix X [r, c] with element strides
// (sr, sc); nullopt when neither stride is 1, so cuBLASLt cannot read X in place.
std::optional<MatrixOperand> transposed_view(const void* data, DType dtype, int64_t r, int64_t c, int64_t sr,
                                             int64_t sc) {
  // Strides of extent-1 axes are never followed; pick values that make the layout valid.
  if (c == 1) sc = 1;
  if (r == 1) sr = sc == 1 ? c : 1;
  if (sc == 1 && sr >= c) return MatrixOperand{data, dtype, c, r, sr, false, 0};
  if (sr == 1 && sc >= r) return MatrixOperand{data, dtype, r, c, sc, true, 0};
  return std::nullopt;
}

// D (m x n, column-major, ld = m) = op(A) [m x k] op(B) [k x n], batched, plus bias[m] on every column.
struct GemmProblem {
  MatrixOperand a, b;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  void* d = nullptr;
  DType d_dtype = DType::F32;
  const void* bias = nullptr;  // in d's dtype
  // FP8 dequantization factors (device floats); null means 1.
  const float* a_scale = nullptr;
  const float* b_scale = nullptr;
};

struct LtDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* desc) const { cublasLtMatmulDescDestroy(desc); }
  void operator()(cublasLtMatrixLayoutOpaque_t* layout) const { cublasLtMatrixLayoutDestroy(layout); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* preference) const {
    cublasLtMatmulPreferenceDestroy(preference);
  }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, LtDeleter>;
using MatrixLayout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LtDeleter>;
using MatmulPreference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, LtDeleter>;

template <typename T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  CANVAS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}
template <typename T>
void set_attribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attribute, const T& value) {
  CANVAS_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, attribute, &value, sizeof(value)));
}
template <typename T>
void set_attribute(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute,
                   const T& value) {
  CANVAS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

MatrixLayout make_layout(DType dtype, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                         int64_t batch_stride) {
  cublasLtMatrixLayout_t raw = nullptr;
  CANVAS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, cuda_data_type(dtype), static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), ld));
  MatrixLayout layout(raw);
  if (batch > 1) {
    set_attribute(raw, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<int32_t>(batch));
    set_attribute(raw, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride);
  }
  return layout;
}

// Everything cuBLASLt needs for one problem shape. has_algorithm is false when the heuristic offered
// nothing; fused_bias says whether the bias runs in the epilogue or must be added afterwards.
struct LtPlan {
  std::mutex mutex;  // the descriptor's pointer attributes are set per call
  MatmulDesc desc;
  MatrixLayout a_layout, b_layout, d_layout;
  cublasLtMatmulAlgo_t algorithm{};
  size_t workspace_bytes = 0;
  std::atomic<bool> has_algorithm = false;
  bool fused_bias = false;
};

// The per-call pointers; also set before the heuristic query, so that it sees the descriptor exactly as
// the launch will.
void set_pointers(cublasLtMatmulDesc_t desc, const GemmProblem& problem, bool fuse_bias) {
  if (fuse_bias) set_attribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, problem.bias);
  if (problem.a_scale) set_attribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, problem.a_scale);
  if (problem.b_scale) set_attribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, problem.b_scale);
}

MatmulDesc make_desc(const GemmProblem& problem, bool fuse_bias) {
  cublasLtMatmulDesc_t raw = nullptr;
  CANVAS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MatmulDesc desc(raw);
  set_attribute(raw, CUBLASLT_MATMUL_DESC_TRANSA, problem.a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_attribute(raw, CUBLASLT_MATMUL_DESC_TRANSB, problem.b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N);
  if (fuse_bias) {
    set_attribute(raw, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    set_attribute(raw, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                  static_cast<int32_t>(cuda_data_type(problem.d_dtype)));
  }
  set_pointers(raw, problem, fuse_bias);
  return desc;
}

bool choose_algorithm(cublasLtHandle_t handle, const GemmProblem& problem, LtPlan& plan) {
  cublasLtMatmulPreference_t raw = nullptr;
  CANVAS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw));
  MatmulPreference preference(raw);
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kMaxGemmWorkspaceBytes);
  const auto alignment = [](const void* pointer) {
    return static_cast<uint32_t>(pointer_alignment(pointer));
  };
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(problem.a.data));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(problem.b.data));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(problem.d));
  set_attribute(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(problem.d));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle, plan.desc.get(), plan.a_layout.get(), plan.b_layout.get(),
                                     plan.d_layout.get(), plan.d_layout.get(), raw, 1, &result, &returned);
  if (status != CUBLAS_STATUS_SUCCESS || returned == 0 || result.state != CUBLAS_STATUS_SUCCESS) return false;
  plan.algorithm = result.algo;
  plan.workspace_bytes = result.workspaceSize;
  return true;
}

std::shared_ptr<LtPlan> build_plan(cublasLtHandle_t handle, const GemmProblem& problem) {
  auto plan = std::make_shared<LtPlan>();
  const int64_t batch = problem.batch;
  plan->a_layout = make_layout(problem.a.dtype, problem.a.rows, problem.a.cols, problem.a.ld, batch,
                               problem.a.batch_stride);
  plan->b_layout = make_layout(problem.b.dtype, problem.b.rows, problem.b.cols, problem.b.ld, batch,
                               problem.b.batch_stride);
  plan->d_layout =
      make_layout(problem.d_dtype, problem.m, problem.n, problem.m, batch, problem.m * problem.n);
  // Prefer the bias in the epilogue; some type combinations only have kernels without it.
  for (const bool fuse_bias : {problem.bias != nullptr, false}) {
    plan->desc = make_desc(problem, fuse_bias);
    if (choose_algorithm(handle, problem, *plan)) {
      plan->has_algorithm = true;
      plan->fused_bias = fuse_bias;
      break;
    }
    if (!fuse_bias) break;
  }
  return plan;
}

using PlanKey = std::vector<int64_t>;

PlanKey plan_key(int device, const GemmProblem& p) {
  const bool has_bias = p.bias != nullptr, has_scales = p.a_scale || p.b_scale;
  PlanKey key = {device, p.m, p.n, p.k, p.batch, static_cast<int64_t>(p.d_dtype), has_bias, has_scales};
  for (const MatrixOperand* o : {&p.a, &p.b}) {
    key.insert(key.end(),
               {static_cast<int64_t>(o->dtype), o->rows, o->cols, o->ld, o->transposed, o->batch_stride});
  }
  for (const void* pointer : {p.a.data, p.b.data, static_cast<const void*>(p.d), p.bias}) {
    key.push_back(pointer_alignment(pointer));
  }
  return key;
}

std::shared_ptr<LtPlan> plan_for(CudaContext& context, const GemmProblem& problem) {
  static cuda::PlanCache<PlanKey, LtPlan> plans(kMaxCachedPlans);
  return plans.find_or_build(plan_key(context.device, problem),
                             [&] { return build_plan(context.cublaslt, problem); });
}

// Returns false when cuBLASLt refuses to launch the algorithm its heuristic offered (it happens); the
// plan is then marked as having none, so later calls go straight to the fallback. Other errors throw.
bool run_plan(CudaContext& context, LtPlan& plan, const GemmProblem& problem) {
  std::lock_guard lock(plan.mutex);
  cublasLtMatmulDesc_t desc = plan.desc.get();
  set_pointers(desc, problem, plan.fused_bias);
  void* workspace =
      plan.workspace_bytes > 0 ? context.workspace(static_cast<int64_t>(plan.workspace_bytes)) : nullptr;
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t status = cublasLtMatmul(
      context.cublaslt, desc, &alpha, problem.a.data, plan.a_layout.get(), problem.b.data,
      plan.b_layout.get(), &beta, problem.d, plan.d_layout.get(), problem.d, plan.d_layout.get(),
      &plan.algorithm, workspace, plan.workspace_bytes, context.compute_stream);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
    plan.has_algorithm = false;
    return false;
  }
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, "cublasLtMatmul", __FILE__, __LINE__);
  return true;
}

// When cuBLASLt offers no algorithm (unusual strides or alignment): classic cuBLAS, which takes any
// layout, still in f32 accumulation (pedantic for f32 so TF32 stays off whatever the handle's math mode).
void run_cublas(CudaContext& context, const GemmProblem& problem) {
  cudaStream_t current = nullptr;
  CANVAS_CUBLAS_CHECK(cublasGetStream(context.cublas, &current));
  if (current != context.compute_stream)
    CANVAS_CUBLAS_CHECK(cublasSetStream(context.cublas, context.compute_stream));
  const cublasComputeType_t compute =
      problem.d_dtype == DType::F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  const float alpha = 1.0f, beta = 0.0f;
  CANVAS_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      context.cublas, problem.a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N,
      problem.b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, problem.m, problem.n, problem.k, &alpha,
      problem.a.data, cuda_data_type(problem.a.dtype), problem.a.ld, problem.a.batch_stride, problem.b.data,
      cuda_data_type(problem.b.dtype), problem.b.ld, problem.b.batch_stride, &beta, problem.d,
      cuda_data_type(problem.d_dtype), problem.m, problem.m * problem.n, problem.batch, compute,
      CUBLAS_GEMM_DEFAULT));
}

// Runs a non-FP8 problem. Returns whether the bias (if any) is already in D.
bool run_gemm(CudaContext& context, const GemmProblem& problem) {
  const std::shared_ptr<LtPlan> plan = plan_for(context, problem);
  if (plan->has_algorithm && run_plan(context, *plan, problem)) {
    return plan->fused_bias || problem.bias == nullptr;
  }
  run_cublas(context, problem);
  return problem.bias == nullptr;
}

// The element stride between consecutive entries of the flattened batch axes [0, batch_rank), or nullopt
// when the axes do not flatten to one stride (broadcast mixed with real extents).
std::optional<int64_t> flat_batch_stride(const Tensor& t, int batch_rank) {
  std::optional<int64_t> innermost;
  int64_t expected = 0;
  for (int axis = batch_rank - 1; axis >= 0; --axis) {
    const int64_t extent = t.dim(axis), stride = t.strides()[axis];
    if (extent == 1) continue;
    if (innermost && stride != expected) return std::nullopt;
    if (!innermost) innermost = stride;
    expected = stride * extent;
  }
  return innermost.value_or(0);
}

// `t` with its broadcast (stride 0) axes kept broadcast and everything else copied densely into scratch
// of `dtype`, so widening an expanded operand does not materialize the expansion.
Tensor converted(CudaBackend& backend, const Tensor& t, DType dtype) {
  Shape compact = t.shape();
  Strides strides = t.strides();
  for (int axis = 0; axis < t.ndim(); ++axis) {
    if (strides[axis] == 0) compact[axis] = 1;
  }
  Tensor dense = cuda::scratch_tensor(compact, dtype, backend.device());
  backend.copy(Tensor::strided_view(t, compact, strides), dense);
  Strides expanded = dense.strides();
  for (int axis = 0; axis < t.ndim(); ++axis) {
    if (compact[axis] != t.dim(axis)) expanded[axis] = 0;
  }
  return Tensor::strided_view(dense, t.shape(), expanded);
}

// A contiguous scratch copy of t, in `dtype` (t's own by default).
Tensor dense_copy(CudaBackend& backend, const Tensor& t, std::optional<DType> dtype = std::nullopt) {
  Tensor dense = cuda::scratch_tensor(t.shape(), dtype.value_or(t.dtype()), backend.device());
  backend.copy(t, dense);
  return dense;
}

// The operand for the batch of row-major matrices in the last two axes of t (transposed, see
// transposed_view); copies t densely when its strides do not allow reading it in place.
MatrixOperand batched_operand(CudaBackend& backend, Tensor& t) {
  const int rank = t.ndim();
  const auto view = [&]() -> std::optional<MatrixOperand> {
    const std::optional<int64_t> batch_stride = flat_batch_stride(t, rank - 2);
    if (!batch_stride) return std::nullopt;
    std::optional<MatrixOperand> operand = transposed_view(t.raw_data(), t.dtype(), t.dim(-2), t.dim(-1),
                                                           t.strides()[rank - 2], t.strides()[rank - 1]);
    if (operand) operand->batch_stride = *batch_stride;
    return operand;
  };
  std::optional<MatrixOperand> operand = view();
  if (!operand) {
    t = dense_copy(backend, t);
    operand = view();
  }
  return *operand;
}

// The row stride of x [..., in] (in > 0) read as a [rows, in] matrix, when its leading axes flatten to
// one stride, its rows are unit-stride and they do not overlap.
std::optional<int64_t> row_stride_of(const Tensor& x) {
  const int64_t in_features = x.dim(-1), rows = x.numel() / in_features;
  if (in_features != 1 && x.strides().back() != 1) return std::nullopt;
  const std::optional<int64_t> stride = flat_batch_stride(x, x.ndim() - 1);
  if (!stride) return std::nullopt;
  if (rows <= 1) return in_features;
  if (*stride < in_features) return std::nullopt;
  return *stride;
}

bool has_fp8_tensor_cores(const CudaContext& context) {
  return context.properties.major * 10 + context.properties.minor >= 89;
}

// out = x w^T (+ bias) with e4m3 weights and bf16 activations on FP8 tensor cores; weight_scale is the
// weight's one f32 scale on the device, or undefined for unscaled e4m3 weights. Returns false, having
// done nothing, when cuBLASLt has no FP8 kernel for the problem.
bool fp8_linear(CudaBackend& backend, const Tensor& x, const Tensor& weight, const Tensor& weight_scale,
                const Tensor& bias, Tensor& out) {
  CudaContext& context = backend.context();
  const int64_t out_features = weight.dim(0), in_features = weight.dim(1), rows = out.numel() / out_features;
  // FP8 kernels read A transposed and need 16-byte aligned leading dimensions: weight rows must be
  // unit-stride with a row step that is a multiple of 16 elements.
  const int64_t weight_row_step = weight.strides()[0];
  if (weight.strides()[1] != 1 || weight_row_step % 16 != 0 || in_features % 16 != 0) return false;

  Tensor quantized = cuda::scratch_tensor({rows, in_features}, DType::F8_E4M3, backend.device());
  // Activation absmax, activation dequantization factor and weight scale, each in its own 16 bytes:
  // cuBLASLt refuses to launch FP8 kernels (NOT_SUPPORTED) whose scale pointers are less aligned.
  constexpr int64_t kFloatsPer16Bytes = 4;
  Tensor scales = cuda::scratch_tensor({3 * kFloatsPer16Bytes}, DType::F32, backend.device());
  float* amax = scales.data<float>();
  float* dequant = amax + kFloatsPer16Bytes;
  float* weight_scale_slot = amax + 2 * kFloatsPer16Bytes;
  if (pointer_alignment(amax) < 16) return false;
  GemmProblem problem;
  problem.a = {weight.raw_data(), DType::F8_E4M3, in_features, out_features, weight_row_step, true, 0};
  problem.b = {quantized.raw_data(), DType::F8_E4M3, in_features, rows, in_features, false, 0};
  problem.m = out_features;
  problem.n = rows;
  problem.k = in_features;
  problem.d = out.raw_data();
  problem.d_dtype = out.dtype();
  problem.bias = bias.defined() ? bias.raw_data() : nullptr;
  problem.a_scale = weight_scale_slot;
  problem.b_scale = dequant;
  const std::shared_ptr<LtPlan> plan = plan_for(context, problem);
  if (!plan->has_algorithm) return false;

  // The scale is copied into the aligned slot rather than passed in place: a weight's scale tensor need
  // not sit on a 16-byte boundary.
  static constexpr float kUnitWeightScale = 1.0f;
  if (weight_scale.defined()) {
    CANVAS_CUDA_CHECK(cudaMemcpyAsync(weight_scale_slot, weight_scale.raw_data(), sizeof(float),
                                      cudaMemcpyDeviceToDevice, context.compute_stream));
  } else {
    CANVAS_CUDA_CHECK(cudaMemcpyAsync(weight_scale_slot, &kUnitWeightScale, sizeof(float),
                                      cudaMemcpyHostToDevice, context.compute_stream));
  }
  const Tensor input = x.is_contiguous() ? x : dense_copy(backend, x);
  cuda::quantize_bf16_to_e4m3(input.raw_data(), input.numel(), quantized.data<uint8_t>(), amax, dequant,
                              context.compute_stream);
  if (!run_plan(context, *plan, problem)) return false;
  if (bias.defined() && !plan->fused_bias)
    backend.binary(BinaryOp::Add, out, ops::expand(bias, out.shape()), out);
  return true;
}

// Quantized weight codes [out, in] widened into dense scratch of `dtype`, scales applied.
Tensor dequantized(CudaBackend& backend, const Tensor& codes, const Tensor& scale, DType dtype) {
  Tensor dense = cuda::scratch_tensor(codes.shape(), dtype, backend.device());
  cudaStream_t stream = backend.context().compute_stream;
  if (codes.dtype() == DType::NF4) {
    cuda::dequantize_nf4(codes.data<uint8_t>(), scale.data<float>(), codes.numel(), dense.raw_data(), dtype,
                         stream);
  } else {
    cuda::dequantize_e4m3(codes.data<uint8_t>(), scale.data<float>(), scale.numel() != 1, codes.dim(0),
                          codes.dim(1), dense.raw_data(), dtype, stream);
  }
  return dense;
}

void check_gemm_operands(std::initializer_list<const Tensor*> tensors, Device device, const char* op) {
  for (const Tensor* t : tensors) {
    if (t->defined()) cuda::check_on_device(*t, device, op);
  }
}

void check_activation_dtype(DType dtype, const char* op) {
  check(is_gemm_dtype(dtype), std::string(op) +
                                  ": the CUDA backend computes in f32, bf16 or f16, got activations in " +
                                  std::string(dtype_name(dtype)));
}

}  // namespace

void CudaBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const Tensor& weight_scale, Tensor& out) {
  check_gemm_operands({&x, &weight, &bias, &weight_scale, &out}, device(), "linear");
  check_activation_dtype(out.dtype(), "linear");
  check(weight_scale.defined() || !is_block_quantized(weight.dtype()),
        "linear: block-quantized " + std::string(dtype_name(weight.dtype())) + " weights need their scales");
  check(!bias.defined() || !is_block_quantized(bias.dtype()), "linear: block-quantized bias");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  const int64_t out_features = weight.dim(0), in_features = weight.dim(1), rows = out.numel() / out_features;
  if (in_features == 0) {
    fill_zero(out);
    if (bias.defined()) binary(BinaryOp::Add, out, ops::expand(bias, out.shape()), out);
    return;
  }
  // The epilogue reads the bias in the output's dtype.
  Tensor bias_for_out = bias;
  if (bias.defined() && (bias.dtype() != out.dtype() || !bias.is_contiguous())) {
    bias_for_out = dense_copy(*this, bias, out.dtype());
  }

  Tensor input = x;
  std::optional<int64_t> row_stride = row_stride_of(input);
  if (!row_stride) {
    input = dense_copy(*this, x);
    row_stride = in_features;
  }

  // cuBLASLt's FP8 kernels take one scale per operand; per-row fp8 and NF4 weights are widened instead.
  const bool one_weight_scale = !weight_scale.defined() || weight_scale.numel() == 1;
  if (weight.dtype() == DType::F8_E4M3 && one_weight_scale && out.dtype() == DType::BF16 &&
      has_fp8_tensor_cores(*context_) && fp8_linear(*this, input, weight, weight_scale, bias_for_out, out)) {
    return;
  }

  Tensor weights = weight_scale.defined()          ? dequantized(*this, weight, weight_scale, out.dtype())
                   : weight.dtype() == out.dtype() ? weight
                                                   : converted(*this, weight, out.dtype());
  // op(A) = weight [out, in], i.e. the transpose of the logical weight^T [in, out].
  std::optional<MatrixOperand> weight_operand =
      transposed_view(weights.raw_data(), weights.dtype(), in_features, out_features, weights.strides()[1],
                      weights.strides()[0]);
  if (!weight_operand) {
    weights = dense_copy(*this, weights);
    weight_operand =
        transposed_view(weights.raw_data(), weights.dtype(), in_features, out_features, 1, in_features);
  }
  GemmProblem problem;
  problem.a = *weight_operand;
  problem.b = *transposed_view(input.raw_data(), input.dtype(), rows, in_features, *row_stride, 1);
  problem.m = out_features;
  problem.n = rows;
  problem.k = in_features;
  problem.d = out.raw_data();
  problem.d_dtype = out.dtype();
  problem.bias = bias_for_out.defined() ? bias_for_out.raw_data() : nullptr;
  if (!run_gemm(*context_, problem)) binary(BinaryOp::Add, out, ops::expand(bias, out.shape()), out);
}

void CudaBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  check_gemm_operands({&a, &b, &out}, device(), "matmul");
  check_activation_dtype(out.dtype(), "matmul");
  check(is_float(b.dtype()) && !is_block_quantized(b.dtype()),
        "matmul: the CUDA backend cannot multiply by " + std::string(dtype_name(b.dtype())));
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  const int64_t m = a.dim(-2), k = a.dim(-1), n = b.dim(-1);
  if (k == 0) {
    fill_zero(out);
    return;
  }
  const int64_t batch = out.numel() / (m * n);
  check(batch <= std::numeric_limits<int32_t>::max(),
        "matmul: " + std::to_string(batch) + " batch entries exceed cuBLASLt's limit");
  Tensor left = a.dtype() == out.dtype() ? a : converted(*this, a, out.dtype());
  Tensor right = b.dtype() == out.dtype() ? b : converted(*this, b, out.dtype());
  GemmProblem problem;
  problem.a = batched_operand(*this, right);
  problem.b = batched_operand(*this, left);
  problem.m = n;
  problem.n = m;
  problem.k = k;
  problem.batch = batch;
  problem.d = out.raw_data();
  problem.d_dtype = out.dtype();
  run_gemm(*context_, problem);
}

}  // namespace canvas
