// Normalizations and reductions along one axis. Row statistics accumulate in double (see sum_of) and the
// per-element work stays in f32.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"

namespace canvas {

namespace {

// Two-pass variance: summing squared deviations avoids the cancellation of E[x^2] - E[x]^2 when the mean
// is large next to the spread.
double sum_of_squared_deviations(const float* values, int64_t count, double mean) {
  double lanes[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    for (int lane = 0; lane < 4; ++lane) {
      double deviation = values[i + lane] - mean;
      lanes[lane] += deviation * deviation;
    }
  }
  for (; i < count; ++i) lanes[0] += (values[i] - mean) * (values[i] - mean);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

const float* data_or_null(const Tensor& tensor) {
  return tensor.defined() ? tensor.data<float>() : nullptr;
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                            Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  const Tensor weight_f32 = cpu::widen_param(weight, "layer_norm", "weight");
  const Tensor bias_f32 = cpu::widen_param(bias, "layer_norm", "bias");
  const float* gamma = data_or_null(weight_f32);
  const float* beta = data_or_null(bias_f32);
  const int64_t length = x.dim(-1);
  cpu::F32Output result(out);
  cpu::for_each_row(input, result.tensor(), [&](const float* row, float* out_row) {
    const double mean = cpu::sum_of(row, length) / static_cast<double>(length);
    const double variance = sum_of_squared_deviations(row, length, mean) / static_cast<double>(length);
    const float mean_f32 = static_cast<float>(mean);
    const float inverse_std = static_cast<float>(1.0 / std::sqrt(variance + eps));
    for (int64_t i = 0; i < length; ++i) {
      float value = (row[i] - mean_f32) * inverse_std;
      if (gamma) value *= gamma[i];
      if (beta) value += beta[i];
      out_row[i] = value;
    }
  });
  result.finish();
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  const Tensor weight_f32 = cpu::widen_param(weight, "rms_norm", "weight");
  const float* gamma = data_or_null(weight_f32);
  const int64_t length = x.dim(-1);
  cpu::F32Output result(out);
  cpu::for_each_row(input, result.tensor(), [&](const float* row, float* out_row) {
    const double mean_square = cpu::sum_of_squares(row, length) / static_cast<double>(length);
    const float inverse_rms = static_cast<float>(1.0 / std::sqrt(mean_square + eps));
    // Normalize first, then weight, in Qwen2RMSNorm's order.
    for (int64_t i = 0; i < length; ++i)
      out_row[i] = gamma ? row[i] * inverse_rms * gamma[i] : row[i] * inverse_rms;
  });
  result.finish();
}

void CpuBackend::l2_normalize(const Tensor& x, int axis, float eps, Tensor& out) {
  // Move the normalized axis last in both views so the row machinery applies; for NCHW along channels the
  // rows are strided and get gathered.
  std::vector<int> order;
  for (int i = 0; i < x.ndim(); ++i) {
    if (i != axis) order.push_back(i);
  }
  order.push_back(axis);
  const Tensor input = cpu::as_f32(x).permute(order);
  const int64_t length = x.dim(axis);
  cpu::F32Output result(out);
  Tensor out_view = result.tensor().permute(order);
  cpu::for_each_row(input, out_view, [&](const float* row, float* out_row) {
    const double norm = std::sqrt(cpu::sum_of_squares(row, length));
    const float inverse = static_cast<float>(1.0 / std::max(norm, static_cast<double>(eps)));
    for (int64_t i = 0; i < length; ++i) out_row[i] = row[i] * inverse;
  });
  result.finish();
}

void CpuBackend::softmax(const Tensor& x, Tensor& out) {
  if (x.numel() == 0) return;
  const Tensor input = cpu::as_f32(x);
  const int64_t length = x.dim(-1);
  cpu::F32Output result(out);
  cpu::for_each_row(input, result.tensor(), [&](const float* row, float* out_row) {
    // Subtracting the maximum keeps exp from overflowing.
    const float maximum = *std::max_element(row, row + length);
    for (int64_t i = 0; i < length; ++i) out_row[i] = std::exp(row[i] - maximum);
    const float inverse_sum = static_cast<float>(1.0 / cpu::sum_of(out_row, length));
    for (int64_t i = 0; i < length; ++i) out_row[i] *= inverse_sum;
  });
  result.finish();
}

void CpuBackend::vector_norm(const Tensor& x, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  const int64_t length = x.dim(-1);
  cpu::F32Output result(out);
  cpu::for_each_row(input, result.tensor(), [&](const float* row, float* out_row) {
    out_row[0] = static_cast<float>(std::sqrt(cpu::sum_of_squares(row, length)));
  });
  result.finish();
}

}  // namespace canvas
