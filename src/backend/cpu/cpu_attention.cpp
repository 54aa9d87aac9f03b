// Scaled dot-product attention with grouped-query heads, key padding and causal masks.
//
// For each (batch, head) the queries go in chunks: scores = scale * Q_chunk K^T by sgemm, a masked
// softmax per row on the thread pool, then out_chunk = P V by sgemm. The score matrix is therefore
// chunk x keys, never queries x keys.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"

namespace canvas {

namespace {

using cpu::BlasMatrix;

constexpr int64_t kQueryChunk = 256;

// A per-head [rows, cols] matrix of a [B, H, L, D] tensor as BLAS reads it.
BlasMatrix head_matrix(const Tensor& tensor, int64_t rows, int64_t cols) {
  return *cpu::blas_matrix(rows, cols, tensor.strides()[2], tensor.strides()[3]);
}
// The transpose of that matrix: [cols, rows].
BlasMatrix transposed_head_matrix(const Tensor& tensor, int64_t rows, int64_t cols) {
  return *cpu::blas_matrix(cols, rows, tensor.strides()[3], tensor.strides()[2]);
}

// q, k and v as f32 with per-head matrices BLAS can read in place.
Tensor blas_readable(const Tensor& tensor) {
  Tensor widened = cpu::as_f32(tensor);
  if (cpu::blas_matrix(widened.dim(2), widened.dim(3), widened.strides()[2], widened.strides()[3]))
    return widened;
  return cpu::dense_f32(widened, 2);
}

// Softmax over the first `visible` scores of a row, skipping keys the mask hides. Hidden keys get
// probability 0; a row with no visible key becomes all zeros rather than NaN.
void masked_softmax_row(float* scores, int64_t visible, int64_t row_length, const uint8_t* key_allowed) {
  float maximum = -std::numeric_limits<float>::infinity();
  bool any_allowed = false;
  for (int64_t j = 0; j < visible; ++j) {
    if (key_allowed[j]) {
      maximum = std::max(maximum, scores[j]);
      any_allowed = true;
    }
  }
  if (!any_allowed) {
    std::fill(scores, scores + row_length, 0.0f);
    return;
  }
  for (int64_t j = 0; j < visible; ++j) scores[j] = key_allowed[j] ? std::exp(scores[j] - maximum) : 0.0f;
  std::fill(scores + visible, scores + row_length, 0.0f);
  const float inverse_sum = static_cast<float>(1.0 / cpu::sum_of(scores, visible));
  for (int64_t j = 0; j < visible; ++j) scores[j] *= inverse_sum;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionMask& mask,
                           float softmax_scale, Tensor& out) {
  const int64_t batch = q.dim(0), heads = q.dim(1), queries = q.dim(2), head_dim = q.dim(3);
  const int64_t kv_heads = k.dim(1), keys = k.dim(2), value_dim = v.dim(3);
  if (out.numel() == 0) return;
  cpu::F32Output result(out);
  float* out_data = result.data();
  if (keys == 0) {
    // Every query has all of its (zero) keys masked.
    std::fill(out_data, out_data + out.numel(), 0.0f);
    result.finish();
    return;
  }
  const Tensor query = blas_readable(q), key = blas_readable(k), value = blas_readable(v);
  const int64_t heads_per_kv = heads / kv_heads;
  // Queries are aligned to the end of the keys, so a causal query i sees keys j <= i + offset.
  const int64_t causal_offset = keys - queries;

  std::vector<uint8_t> key_allowed(static_cast<size_t>(batch * keys), 1);
  if (mask.key_padding.defined()) {
    const Tensor padding = cpu::contiguous_f32(mask.key_padding);
    const float* flags = padding.data<float>();
    for (size_t i = 0; i < key_allowed.size(); ++i) key_allowed[i] = flags[i] != 0.0f;
  }

  const int64_t chunk = std::min(kQueryChunk, queries);
  Tensor scores_tensor = cpu::scratch_tensor({chunk, keys}, DType::F32);
  float* scores = scores_tensor.data<float>();

  for (int64_t b = 0; b < batch; ++b) {
    const uint8_t* allowed = key_allowed.data() + b * keys;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv_head = h / heads_per_kv;
      const float* q_head = query.data<float>() + b * query.strides()[0] + h * query.strides()[1];
      const float* k_head = key.data<float>() + b * key.strides()[0] + kv_head * key.strides()[1];
      const float* v_head = value.data<float>() + b * value.strides()[0] + kv_head * value.strides()[1];
      for (int64_t first = 0; first < queries; first += chunk) {
        const int64_t rows = std::min(chunk, queries - first);
        // Keys past the last query's causal limit are hidden from the whole chunk: leave them out.
        const int64_t visible = mask.causal ? std::min(keys, first + rows + causal_offset) : keys;
        cpu::sgemm(rows, visible, head_dim, softmax_scale, q_head + first * query.strides()[2],
                   head_matrix(query, rows, head_dim), k_head, transposed_head_matrix(key, visible, head_dim),
                   0.0f, scores, visible);
        const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / visible);
        parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const int64_t limit = mask.causal ? std::min(visible, first + row + causal_offset + 1) : visible;
            masked_softmax_row(scores + row * visible, limit, visible, allowed);
          }
        });
        float* out_chunk = out_data + ((b * heads + h) * queries + first) * value_dim;
        cpu::sgemm(rows, value_dim, visible, 1.0f, scores, cpu::row_major(rows, visible), v_head,
                   head_matrix(value, visible, value_dim), 0.0f, out_chunk, value_dim);
      }
    }
  }
  result.finish();
}

}  // namespace canvas
