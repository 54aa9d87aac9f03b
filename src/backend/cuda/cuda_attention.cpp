// Scaled dot-product attention through cuDNN's fused SDPA (cudnn-frontend graphs), with a plain CUDA
// kernel (cuda_attention_kernels.cu) for what cuDNN does not run: f32, unusual head dims, strides or
// alignment, and causal masks combined with key padding when there are fewer queries than keys.
//
// Masks. Causal: queries align to the end of the keys (query i sees keys j <= i + keys - queries), which
// is cuDNN's top-left diagonal when queries == keys and its bottom-right diagonal otherwise. Key padding:
// the [B, keys] mask becomes an additive bias [B, 1, 1, keys] (0 or kHiddenKeyBias) built on the device,
// so any pattern works (the transformer's joint mask has the text padding in the middle of the keys) and
// nothing is read back to the host. Queries that see no key get zeros from a small kernel afterwards.
//
// Each graph is built once per (device, dtype, shape, strides, mask kind, scale) and cached with its
// workspace size; configurations cuDNN refuses are cached too, so they go straight to the fallback.
#include <cudnn_frontend.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/cuda/cuda_attention_kernels.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/plan_cache.h"

namespace canvas {

namespace {

namespace fe = cudnn_frontend;

enum TensorUid : int64_t { kQueryUid = 1, kKeyUid, kValueUid, kOutputUid, kBiasUid };

enum class CausalKind : int64_t { None, TopLeft, BottomRight };

// Graphs cached per process (text encoders see many prompt lengths); past this, the least recently used
// one goes.
constexpr size_t kMaxCachedGraphs = 512;

// Strides for cuDNN: as the tensor's, except that extent-1 axes (whose stride is never followed but
// still enters cuDNN's alignment and layout checks) get the span of the axes inside them.
std::array<int64_t, 4> sdpa_strides(const Tensor& t) {
  std::array<int64_t, 4> strides{};
  int64_t span = 1;
  for (int axis = 3; axis >= 0; --axis) {
    strides[axis] = t.dim(axis) == 1 ? span : t.strides()[axis];
    span = std::max(span, strides[axis] * t.dim(axis));
  }
  return strides;
}

struct SdpaShape {
  DType dtype;
  int64_t batch, heads, kv_heads, queries, keys, head_dim, value_dim;
  std::array<int64_t, 4> q_strides, k_strides, v_strides;
  CausalKind causal;
  bool key_bias;
  float scale;
};

using GraphKey = std::vector<int64_t>;

GraphKey graph_key(int device, const SdpaShape& s) {
  GraphKey key = {device,      static_cast<int64_t>(s.dtype),
                  s.batch,     s.heads,
                  s.kv_heads,  s.queries,
                  s.keys,      s.head_dim,
                  s.value_dim, static_cast<int64_t>(s.causal),
                  s.key_bias,  std::bit_cast<int32_t>(s.scale)};
  for (const auto* strides : {&s.q_strides, &s.k_strides, &s.v_strides}) {
    key.insert(key.end(), strides->begin(), strides->end());
  }
  return key;
}

std::string describe(const SdpaShape& s) {
  return std::string(dtype_name(s.dtype)) + " B=" + std::to_string(s.batch) +
         " H=" + std::to_string(s.heads) + " Hkv=" + std::to_string(s.kv_heads) +
         " Lq=" + std::to_string(s.queries) + " Lk=" + std::to_string(s.keys) +
         " D=" + std::to_string(s.head_dim) + " Dv=" + std::to_string(s.value_dim) +
         (s.causal != CausalKind::None ? " causal" : "") + (s.key_bias ? " key-padding" : "");
}

// A built graph, or none when cuDNN cannot run the configuration.
struct SdpaPlan {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace_bytes = 0;
};

std::shared_ptr<SdpaPlan> build_plan(cudnnHandle_t handle, const SdpaShape& s, std::string& failure) {
  const fe::DataType_t io_type = s.dtype == DType::BF16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(io_type)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  const auto input = [&](const char* name, TensorUid uid, std::vector<int64_t> dims,
                         const std::array<int64_t, 4>& strides) {
    return graph->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_uid(uid)
                             .set_data_type(io_type)
                             .set_dim(std::move(dims))
                             .set_stride({strides.begin(), strides.end()}));
  };
  auto q = input("q", kQueryUid, {s.batch, s.heads, s.queries, s.head_dim}, s.q_strides);
  auto k = input("k", kKeyUid, {s.batch, s.kv_heads, s.keys, s.head_dim}, s.k_strides);
  auto v = input("v", kValueUid, {s.batch, s.kv_heads, s.keys, s.value_dim}, s.v_strides);

  auto options =
      fe::graph::SDPA_attributes().set_name("attention").set_generate_stats(false).set_attn_scale(s.scale);
  if (s.causal != CausalKind::None) {
    options
        .set_diagonal_alignment(s.causal == CausalKind::TopLeft ? fe::DiagonalAlignment_t::TOP_LEFT
                                                                : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
        .set_diagonal_band_right_bound(0);
  }
  if (s.key_bias) {
    options.set_bias(input("key_bias", kBiasUid, {s.batch, 1, 1, s.keys}, {s.keys, s.keys, s.keys, 1}));
  }
  auto output = graph->sdpa(q, k, v, options)[0];
  output->set_output(true)
      .set_uid(kOutputUid)
      .set_data_type(io_type)
      .set_dim({s.batch, s.heads, s.queries, s.value_dim})
      .set_stride({s.heads * s.queries * s.value_dim, s.queries * s.value_dim, s.value_dim, 1});

  auto plan = std::make_shared<SdpaPlan>();
  try {
    fe::error_t status = graph->build(handle, {fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (status.is_good()) status = graph->get_workspace_size(plan->workspace_bytes);
    if (status.is_bad()) {
      failure = status.get_message();
      return plan;
    }
  } catch (const std::exception& error) {
    failure = error.what();
    return plan;
  }
  plan->graph = std::move(graph);
  return plan;
}

// Once per configuration: the fallback is correct but far slower, which the user should be able to see.
void report_fallback(const SdpaShape& shape, const std::string& failure) {
  std::fprintf(stderr, "canvas: cuDNN attention cannot run %s (%s); using the fallback kernel\n",
               describe(shape).c_str(), failure.c_str());
}

cuda::PlanCache<GraphKey, SdpaPlan>& plan_cache() {
  static cuda::PlanCache<GraphKey, SdpaPlan> cache(kMaxCachedGraphs);
  return cache;
}

std::shared_ptr<SdpaPlan> find_or_build_plan(CudaContext& context, const SdpaShape& shape) {
  return plan_cache().find_or_build(graph_key(context.device, shape), [&] {
    std::string failure;
    std::shared_ptr<SdpaPlan> plan = build_plan(context.cudnn, shape, failure);
    if (!plan->graph) report_fallback(shape, failure);
    return plan;
  });
}

// After a failed execution: later calls of this configuration skip cuDNN.
void give_up(CudaContext& context, const SdpaShape& shape, const std::string& failure) {
  plan_cache().replace(graph_key(context.device, shape), std::make_shared<SdpaPlan>());
  report_fallback(shape, failure);
}

bool aligned_16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

cuda::KeyMask key_mask_of(const Tensor& key_padding) {
  return {key_padding.raw_data(), key_padding.dtype(), key_padding.strides()[0], key_padding.strides()[1]};
}

// Runs the attention on cuDNN when it can; returns false, with out untouched, when it cannot.
bool cudnn_attention(CudaBackend& backend, const Tensor& q, const Tensor& k, const Tensor& v,
                     const ops::AttentionMask& mask, float softmax_scale, Tensor& out) {
  if (q.dtype() != DType::BF16 && q.dtype() != DType::F16) return false;
  SdpaShape shape{.dtype = q.dtype(),
                  .batch = q.dim(0),
                  .heads = q.dim(1),
                  .kv_heads = k.dim(1),
                  .queries = q.dim(2),
                  .keys = k.dim(2),
                  .head_dim = q.dim(3),
                  .value_dim = v.dim(3),
                  .q_strides = sdpa_strides(q),
                  .k_strides = sdpa_strides(k),
                  .v_strides = sdpa_strides(v),
                  .causal = CausalKind::None,
                  .key_bias = mask.key_padding.defined(),
                  .scale = softmax_scale};
  if (mask.causal) shape.causal = shape.queries == shape.keys ? CausalKind::TopLeft : CausalKind::BottomRight;
  // cuDNN has no bottom-right diagonal together with a bias.
  if (shape.key_bias && shape.causal == CausalKind::BottomRight) return false;
  if (shape.head_dim % 8 != 0 || shape.value_dim % 8 != 0 || shape.q_strides[3] != 1 ||
      shape.k_strides[3] != 1 || shape.v_strides[3] != 1) {
    return false;
  }
  if (!out.is_contiguous() || !aligned_16(q.raw_data()) || !aligned_16(k.raw_data()) ||
      !aligned_16(v.raw_data()) || !aligned_16(out.raw_data())) {
    return false;
  }
  CudaContext& context = backend.context();
  const std::shared_ptr<SdpaPlan> plan = find_or_build_plan(context, shape);
  if (!plan->graph) return false;

  std::unordered_map<int64_t, void*> pointers = {{kQueryUid, q.raw_data()},
                                                 {kKeyUid, k.raw_data()},
                                                 {kValueUid, v.raw_data()},
                                                 {kOutputUid, out.raw_data()}};
  Tensor bias, first_visible;
  if (shape.key_bias) {
    bias = cuda::scratch_tensor({shape.batch, shape.keys}, q.dtype(), backend.device());
    first_visible = cuda::scratch_tensor({shape.batch}, DType::I32, backend.device());
    cuda::prepare_key_mask(key_mask_of(mask.key_padding), shape.batch, shape.keys, bias.raw_data(),
                           bias.dtype(), nullptr, first_visible.data<int32_t>(), context.compute_stream);
    pointers[kBiasUid] = bias.raw_data();
  }
  cudaStream_t current = nullptr;
  CANVAS_CUDNN_CHECK(cudnnGetStream(context.cudnn, &current));
  if (current != context.compute_stream)
    CANVAS_CUDNN_CHECK(cudnnSetStream(context.cudnn, context.compute_stream));
  void* workspace = plan->workspace_bytes > 0 ? context.workspace(plan->workspace_bytes) : nullptr;
  std::string failure;
  bool executed = false;
  try {
    fe::error_t status = plan->graph->execute(context.cudnn, pointers, workspace);
    executed = status.is_good();
    failure = status.get_message();
  } catch (const std::exception& error) {
    failure = error.what();
  }
  if (!executed) {
    give_up(context, shape, failure);
    return false;
  }
  if (shape.key_bias) {
    cuda::zero_unattended_rows(out.raw_data(), out.dtype(), shape.batch, shape.heads, shape.queries,
                               shape.keys, shape.value_dim, mask.causal, first_visible.data<int32_t>(),
                               context.compute_stream);
  }
  return true;
}

void copy_strides(const Tensor& t, int64_t (&strides)[4]) {
  for (int axis = 0; axis < 4; ++axis) strides[axis] = t.strides()[axis];
}

void fallback_attention(CudaBackend& backend, const Tensor& q, const Tensor& k, const Tensor& v,
                        const ops::AttentionMask& mask, float softmax_scale, Tensor& out) {
  cudaStream_t stream = backend.context().compute_stream;
  cuda::AttentionArgs args;
  args.dtype = q.dtype();
  args.q = q.raw_data();
  args.k = k.raw_data();
  args.v = v.raw_data();
  args.out = out.raw_data();
  args.batch = q.dim(0);
  args.heads = q.dim(1);
  args.kv_heads = k.dim(1);
  args.queries = q.dim(2);
  args.keys = k.dim(2);
  args.head_dim = q.dim(3);
  args.value_dim = v.dim(3);
  copy_strides(q, args.q_strides);
  copy_strides(k, args.k_strides);
  copy_strides(v, args.v_strides);
  copy_strides(out, args.out_strides);
  args.causal = mask.causal;
  args.scale = softmax_scale;
  Tensor key_visible, first_visible;
  if (mask.key_padding.defined()) {
    key_visible = cuda::scratch_tensor({args.batch, args.keys}, DType::U8, backend.device());
    first_visible = cuda::scratch_tensor({args.batch}, DType::I32, backend.device());
    cuda::prepare_key_mask(key_mask_of(mask.key_padding), args.batch, args.keys, nullptr, DType::F32,
                           key_visible.data<uint8_t>(), first_visible.data<int32_t>(), stream);
    args.key_visible = key_visible.data<uint8_t>();
  }
  cuda::attention_fallback(args, stream);
}

// Head dims past the fallback kernel's registers (the VAE's single-head attention over 384 channels)
// go through GEMMs: scores for a chunk of queries, softmax, then the weighted sum of values. Chunking
// keeps the score block near 256 MiB however many positions the image has.
void gemm_attention(CudaBackend& backend, const Tensor& q, const Tensor& k, const Tensor& v,
                    const ops::AttentionMask& mask, float softmax_scale, Tensor& out) {
  check(!mask.causal && !mask.key_padding.defined() && q.dim(1) == k.dim(1),
        "attention: head dims above " + std::to_string(cuda::kFallbackMaxHeadDim) +
            " are supported without masks or grouped heads only");
  constexpr int64_t kScoreBlockBytes = int64_t{256} << 20;
  const int64_t batch_heads = q.dim(0) * q.dim(1), queries = q.dim(2), keys = k.dim(2);
  const int64_t chunk =
      std::max<int64_t>(1, kScoreBlockBytes / (batch_heads * keys * element_size(q.dtype())));
  const Tensor keys_transposed = k.transpose(2, 3);
  for (int64_t start = 0; start < queries; start += chunk) {
    const int64_t end = std::min(queries, start + chunk);
    Tensor scores = ops::matmul(q.slice(2, start, end), keys_transposed);
    Tensor weighted = ops::matmul(ops::softmax(ops::scale(scores, softmax_scale)), v);
    Tensor destination = out.slice(2, start, end);
    backend.copy(weighted, destination);
  }
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionMask& mask,
                            float softmax_scale, Tensor& out) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &out, &mask.key_padding}) {
    if (t->defined()) cuda::check_on_device(*t, device(), "attention");
  }
  check(cuda::is_kernel_dtype(q.dtype()), "attention: the CUDA backend computes in f32, bf16 or f16, got " +
                                              std::string(dtype_name(q.dtype())));
  check(!mask.key_padding.defined() || !is_block_quantized(mask.key_padding.dtype()),
        "attention: block-quantized key mask");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(device_index_);
  if (k.dim(2) == 0) {
    // Every query has all of its (zero) keys masked.
    fill_zero(out);
    return;
  }
  const auto in_query_dtype = [&](const Tensor& t) {
    if (t.dtype() == q.dtype()) return t;
    Tensor converted = cuda::scratch_tensor(t.shape(), q.dtype(), device());
    copy(t, converted);
    return converted;
  };
  const Tensor key = in_query_dtype(k), value = in_query_dtype(v);
  if (cudnn_attention(*this, q, key, value, mask, softmax_scale, out)) return;
  if (q.dim(3) > cuda::kFallbackMaxHeadDim || value.dim(3) > cuda::kFallbackMaxHeadDim) {
    gemm_attention(*this, q, key, value, mask, softmax_scale, out);
    return;
  }
  fallback_attention(*this, q, key, value, mask, softmax_scale, out);
}

}  // namespace canvas
