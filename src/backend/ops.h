// The operations models are written in. Each op checks its arguments, allocates its output through the
// device's allocator (charged to the current OwnerScope) and runs the kernel of the tensors' backend.
//
// Conventions:
//  - Activations are computed in their own dtype (f32 on the CPU); the output takes the dtype of the
//    first activation argument.
//  - Weights (linear, conv, norm, embedding tables) may be stored in any float dtype, including f8 and
//    block-quantized types; backends widen them on the fly.
//  - All tensors of one op live on one device.
#pragma once

#include <optional>
#include <span>

#include "tensor/tensor.h"

namespace canvas::ops {

// ---- copies and layout ----
Tensor contiguous(const Tensor& x);
Tensor cast(const Tensor& x, DType dtype);
Tensor to_device(const Tensor& x, Device device);
// Copies src into dst (a view is fine); shapes must match, dtypes may differ.
void copy_into(const Tensor& src, Tensor& dst);
void fill_zero(Tensor& dst);
Tensor concat(std::span<const Tensor> parts, int axis);
// Broadcasts x to `shape` as a view with zero strides.
Tensor expand(const Tensor& x, const Shape& shape);

// ---- elementwise (numpy broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float factor);
// min(max(x, min_value), max_value); NaN stays NaN.
Tensor clamp(const Tensor& x, float min_value, float max_value);
Tensor silu(const Tensor& x);
Tensor gelu_tanh(const Tensor& x);
Tensor gelu_erf(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
// x * (1 + scale) + shift, the adaLN modulation; shift and scale broadcast against x.
Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale);
// residual + gate * x; gate broadcasts against x.
Tensor gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x);

// ---- normalization and reductions ----
// Over the last axis. weight/bias are optional (undefined Tensor means none).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
// x / max(||x||_2, eps) along `axis` (torch.nn.functional.normalize).
Tensor l2_normalize(const Tensor& x, int axis, float eps);
Tensor softmax(const Tensor& x);  // last axis
// Euclidean norm over the last axis, kept as an axis of extent 1.
Tensor vector_norm(const Tensor& x);

// ---- matrix products ----
// x [..., in] times weight [out, in] transposed, plus bias [out]. A defined weight_scale marks weight as
// quantized storage (f8_e4m3 or nf4 codes, see tensor/quantize.h): the weight is codes times scales.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              const Tensor& weight_scale = {});
// a [..., m, k] @ b [..., k, n] with broadcast batch axes.
Tensor matmul(const Tensor& a, const Tensor& b);

struct AttentionMask {
  Tensor key_padding;   // [batch, keys], nonzero where the key may be attended; undefined for none
  bool causal = false;  // query i sees keys j <= i + (keys - queries)
};
// Scaled dot-product attention. q [B, H, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] with H a
// multiple of Hkv (grouped-query attention). Returns [B, H, Lq, Dv]. A query whose keys are all masked
// gets zeros.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                 float softmax_scale);

// ---- positions ----
enum class RopeLayout {
  Interleaved,  // pairs (x[2i], x[2i+1]), as Qwen-Image's complex multiplication
  HalfSplit,    // pairs (x[i], x[i + D/2]), as rotate_half in transformers
};
// x [B, L, H, D]; cos and sin [L, D/2] or [B, L, D/2], one angle per rotated pair.
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout);

// ---- convolution and resampling (NCHW) ----
struct Conv2dParams {
  int stride = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  static Conv2dParams same(int padding, int stride = 1) {
    return {stride, padding, padding, padding, padding};
  }
};
// x [N, C, H, W], weight [O, C, kh, kw], bias [O].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params);
Tensor upsample_nearest2x(const Tensor& x);

// ---- lookups ----
// ids (i32 or i64) of any shape; table [V, D]. Returns [..., D] in `output_dtype`, the caller's
// activation dtype. Throws canvas::Error on an id outside the table.
Tensor embedding(const Tensor& ids, const Tensor& table, DType output_dtype);

}  // namespace canvas::ops
