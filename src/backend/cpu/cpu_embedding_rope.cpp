// Token embedding lookups and rotary position embeddings.
#include <algorithm>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"
#include "util/error.h"

namespace canvas {

void CpuBackend::embedding(const Tensor& ids, const Tensor& table, Tensor& out) {
  cpu::check_widenable(table, "embedding", "table");
  const int64_t vocabulary = table.dim(0), width = table.dim(1);
  // Read every id as i64 (exact, unlike a trip through f32) and check them all before writing anything.
  Tensor ids_i64 = cpu::scratch_tensor(ids.shape(), DType::I64);
  cpu::copy_elements(ids, ids_i64);
  const int64_t* id_values = ids_i64.data<int64_t>();
  const int64_t count = ids_i64.numel();
  for (int64_t i = 0; i < count; ++i) {
    check(id_values[i] >= 0 && id_values[i] < vocabulary, "embedding: id " + std::to_string(id_values[i]) +
                                                              " is outside the table of " +
                                                              std::to_string(vocabulary) + " rows");
  }
  // Row copies convert straight from the table's dtype into the output's (nested parallel_for runs inline).
  const Tensor out_rows = out.view({count, width});
  const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / std::max<int64_t>(width, 1));
  parallel_for(count, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      cpu::copy_elements(table.select(0, id_values[i]), out_rows.select(0, i));
  });
}

void CpuBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
                      Tensor& out) {
  const Tensor input = cpu::as_f32(x), cos_f32 = cpu::as_f32(cos), sin_f32 = cpu::as_f32(sin);
  const int64_t batch = x.dim(0), length = x.dim(1), heads = x.dim(2), head_dim = x.dim(3);
  const int64_t pairs = head_dim / 2;
  const Strides& xs = input.strides();
  const Strides& cs = cos_f32.strides();
  const Strides& ss = sin_f32.strides();
  cpu::F32Output result(out);
  float* out_data = result.data();
  const float* x_data = input.data<float>();
  const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / std::max<int64_t>(heads * head_dim, 1));
  // One task item per (batch, position): its angles are gathered once and shared by all heads.
  parallel_for(batch * length, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_row(pairs), sin_row(pairs), x_row(head_dim);
    for (int64_t position = begin; position < end; ++position) {
      const int64_t b = position / length, l = position % length;
      const float* cos_source = cos_f32.data<float>() + b * cs[0] + l * cs[1];
      const float* sin_source = sin_f32.data<float>() + b * ss[0] + l * ss[1];
      for (int64_t i = 0; i < pairs; ++i) {
        cos_row[i] = cos_source[i * cs[2]];
        sin_row[i] = sin_source[i * ss[2]];
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float* x_source = x_data + b * xs[0] + l * xs[1] + h * xs[2];
        for (int64_t i = 0; i < head_dim; ++i) x_row[i] = x_source[i * xs[3]];
        float* o = out_data + (position * heads + h) * head_dim;
        if (layout == ops::RopeLayout::Interleaved) {
          for (int64_t i = 0; i < pairs; ++i) {
            const float even = x_row[2 * i], odd = x_row[2 * i + 1];
            o[2 * i] = even * cos_row[i] - odd * sin_row[i];
            o[2 * i + 1] = even * sin_row[i] + odd * cos_row[i];
          }
        } else {
          for (int64_t i = 0; i < pairs; ++i) {
            const float first = x_row[i], second = x_row[i + pairs];
            o[i] = first * cos_row[i] - second * sin_row[i];
            o[i + pairs] = second * cos_row[i] + first * sin_row[i];
          }
        }
      }
    }
  });
  result.finish();
}

}  // namespace canvas
