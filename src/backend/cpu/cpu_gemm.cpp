// Matrix products through OpenBLAS sgemm: linear layers (with low-precision or quantized weights widened
// in row blocks) and batched matmul.
#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"
#include "tensor/quantize.h"
#include "util/error.h"

namespace canvas {

namespace {

using cpu::BlasMatrix;

// Output features widened per block: the f32 copy of a block stays a few MB even for 12k-wide inputs,
// while each sgemm stays large enough to run at full speed.
constexpr int64_t kWeightBlockRows = 256;

// Every row of out [rows, features] starts as the bias, so sgemm can accumulate onto it (beta = 1).
void fill_rows_with_bias(float* out, int64_t rows, int64_t features, const float* bias) {
  const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / std::max<int64_t>(features, 1));
  parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      std::memcpy(out + row * features, bias, static_cast<size_t>(features) * sizeof(float));
    }
  });
}

}  // namespace

void CpuBackend::linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& weight_scale,
                        Tensor& out) {
  if (!weight_scale.defined()) cpu::check_widenable(weight, "linear", "weight");
  if (out.numel() == 0) return;
  const int64_t out_features = weight.dim(0), in_features = weight.dim(1);
  const int64_t rows = out.numel() / out_features;

  Tensor input = cpu::as_f32(x);
  std::optional<BlasMatrix> input_layout = cpu::blas_matrix_of_rows(input);
  if (!input_layout) {
    input = cpu::contiguous_f32(input);
    input_layout = cpu::row_major(rows, in_features);
  }
  const float* input_data = input.data<float>();

  cpu::F32Output result(out);
  float* out_data = result.data();
  const Tensor bias_f32 = cpu::widen_param(bias, "linear", "bias");
  if (bias_f32.defined()) {
    fill_rows_with_bias(out_data, rows, out_features, bias_f32.data<float>());
  } else if (in_features == 0) {
    std::fill(out_data, out_data + rows * out_features, 0.0f);
  }
  const float beta = bias_f32.defined() ? 1.0f : 0.0f;
  if (in_features == 0) {
    result.finish();
    return;
  }

  // op(B) is weight transposed: [in, out] read from the [out, in] storage.
  std::optional<BlasMatrix> weight_layout;
  if (weight.dtype() == DType::F32 && !weight_scale.defined()) {
    weight_layout = cpu::blas_matrix(in_features, out_features, weight.strides()[1], weight.strides()[0]);
  }
  if (weight_layout) {
    cpu::sgemm(rows, out_features, in_features, 1.0f, input_data, *input_layout, weight.data<float>(),
               *weight_layout, beta, out_data, out_features);
  } else {
    const int64_t block_rows = std::min(kWeightBlockRows, out_features);
    Tensor block = cpu::scratch_tensor({block_rows, in_features}, DType::F32);
    for (int64_t first = 0; first < out_features; first += block_rows) {
      const int64_t count = std::min(block_rows, out_features - first);
      if (weight_scale.defined()) {
        dequantize_rows(weight, weight_scale, first, count, block.data<float>());
      } else {
        cpu::copy_elements(weight.slice(0, first, first + count), block.slice(0, 0, count));
      }
      cpu::sgemm(rows, count, in_features, 1.0f, input_data, *input_layout, block.data<float>(),
                 BlasMatrix{CblasTrans, cpu::blas_int(in_features)}, beta, out_data + first, out_features);
    }
  }
  result.finish();
}

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  if (out.numel() == 0) return;
  const int rank = out.ndim();
  const int64_t m = out.dim(-2), n = out.dim(-1), k = a.dim(-1);
  cpu::F32Output result(out);
  if (k == 0) {
    std::fill(result.data(), result.data() + out.numel(), 0.0f);
    result.finish();
    return;
  }
  // Operands whose matrices BLAS cannot read in place get a dense copy of the matrix axes; broadcast
  // batch axes stay broadcast.
  auto readable = [&](Tensor tensor, int64_t rows, int64_t cols) {
    tensor = cpu::as_f32(tensor);
    if (!cpu::blas_matrix(rows, cols, tensor.strides()[rank - 2], tensor.strides()[rank - 1])) {
      tensor = cpu::dense_f32(tensor, rank - 2);
    }
    return tensor;
  };
  const Tensor lhs = readable(a, m, k), rhs = readable(b, k, n);
  const BlasMatrix lhs_layout = *cpu::blas_matrix(m, k, lhs.strides()[rank - 2], lhs.strides()[rank - 1]);
  const BlasMatrix rhs_layout = *cpu::blas_matrix(k, n, rhs.strides()[rank - 2], rhs.strides()[rank - 1]);

  const Shape batch(out.shape().begin(), out.shape().end() - 2);
  const Strides lhs_batch(lhs.strides().begin(), lhs.strides().end() - 2);
  const Strides rhs_batch(rhs.strides().begin(), rhs.strides().end() - 2);
  const Strides out_batch(result.tensor().strides().begin(), result.tensor().strides().end() - 2);
  const cpu::StridedLoop<3> loop(batch, {&lhs_batch, &rhs_batch, &out_batch});
  const float* lhs_data = lhs.data<float>();
  const float* rhs_data = rhs.data<float>();
  float* out_data = result.data();
  // One sgemm per batch entry, issued from this thread: OpenBLAS spreads each over its own threads.
  loop.for_each_run(0, shape_numel(batch), [&](const cpu::StridedLoop<3>::Offsets& offsets, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      cpu::sgemm(m, n, k, 1.0f, lhs_data + offsets[0] + i * loop.inner_stride(0), lhs_layout,
                 rhs_data + offsets[1] + i * loop.inner_stride(1), rhs_layout, 0.0f,
                 out_data + offsets[2] + i * loop.inner_stride(2), n);
    }
  });
  result.finish();
}

}  // namespace canvas
