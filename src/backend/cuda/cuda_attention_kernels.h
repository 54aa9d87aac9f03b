// Kernels behind CudaBackend::attention (cuda_attention.cpp): turning the key-padding mask into what
// cuDNN's fused attention takes, zeroing the rows of queries that see no key, and the fallback
// attention kernel for what cuDNN does not run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace canvas::cuda {

// A [batch, keys] key-padding mask of any plain dtype; nonzero means the key may be attended.
struct KeyMask {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t batch_stride = 0, key_stride = 0;
};

// The additive score bias cuDNN gets for hidden keys. Finite, so a tile whose keys are all hidden keeps
// cuDNN's running softmax finite (an all -inf tile would give exp(-inf - -inf) = NaN); far below any real
// scaled score (a few hundred at most), so exp() of a hidden key underflows to exactly 0; and within
// f16's range.
inline constexpr float kHiddenKeyBias = -30000.0f;

// Reads the mask once. bias[b, j] (bias_dtype bf16 or f16; skipped when null) becomes 0 for visible keys
// and kHiddenKeyBias for hidden ones; key_visible[b, j] (skipped when null) becomes 1 or 0;
// first_visible[b] becomes the index of sample b's first visible key, or `keys` when it has none.
void prepare_key_mask(const KeyMask& mask, int64_t batch, int64_t keys, void* bias, DType bias_dtype,
                      uint8_t* key_visible, int32_t* first_visible, cudaStream_t stream);

// Zeroes the rows of the contiguous out [batch, heads, queries, value_dim] whose query sees no key: the
// sample has no visible key, or (causal) none at or before the query's diagonal i + keys - queries.
void zero_unattended_rows(void* out, DType dtype, int64_t batch, int64_t heads, int64_t queries, int64_t keys,
                          int64_t value_dim, bool causal, const int32_t* first_visible, cudaStream_t stream);

// The fallback kernel handles head dims up to this.
inline constexpr int64_t kFallbackMaxHeadDim = 256;

struct AttentionArgs {
  DType dtype = DType::F32;  // of q, k, v and out: f32, bf16 or f16
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  int64_t batch = 0, heads = 0, kv_heads = 0, queries = 0, keys = 0, head_dim = 0, value_dim = 0;
  // Element strides of the [B, H, L, D] tensors.
  int64_t q_strides[4] = {}, k_strides[4] = {}, v_strides[4] = {}, out_strides[4] = {};
  const uint8_t* key_visible = nullptr;  // contiguous [batch, keys], or null when every key is visible
  bool causal = false;
  float scale = 1.0f;
};

// Exact attention with an online softmax in f32: one warp per query, keys in order. Rows that see no
// key come out as zeros. Slow next to cuDNN, but any strides, dtypes, masks and GQA.
void attention_fallback(const AttentionArgs& args, cudaStream_t stream);

}  // namespace canvas::cuda
