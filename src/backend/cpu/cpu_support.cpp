#include "backend/cpu/cpu_support.h"

#include <climits>
#include <string>

#include "util/error.h"

namespace canvas::cpu {

Tensor scratch_tensor(const Shape& shape, DType dtype) {
  MemoryOwner owner = current_owner();
  owner.role = MemoryRole::Scratch;
  OwnerScope scope(std::move(owner));
  return Tensor::empty(shape, dtype);
}

void check_widenable(const Tensor& tensor, const char* op, const char* what) {
  check(!is_block_quantized(tensor.dtype()),
        std::string(op) + ": " + what + " is stored as block-quantized " +
            std::string(dtype_name(tensor.dtype())) + ", which the CPU backend cannot compute with yet");
}

Tensor dense_f32(const Tensor& tensor, int dense_from) {
  Shape compact_shape = tensor.shape();
  for (int axis = 0; axis < dense_from; ++axis) {
    if (tensor.strides()[axis] == 0) compact_shape[axis] = 1;
  }
  Tensor dense = scratch_tensor(compact_shape, DType::F32);
  copy_elements(Tensor::strided_view(tensor, compact_shape, tensor.strides()), dense);
  Strides strides = dense.strides();
  for (int axis = 0; axis < dense_from; ++axis) {
    if (tensor.strides()[axis] == 0) strides[axis] = 0;
  }
  return Tensor::strided_view(dense, tensor.shape(), strides);
}

Tensor as_f32(const Tensor& tensor) {
  return tensor.dtype() == DType::F32 ? tensor : dense_f32(tensor, tensor.ndim());
}

Tensor contiguous_f32(const Tensor& tensor) {
  return tensor.dtype() == DType::F32 && tensor.is_contiguous() ? tensor : dense_f32(tensor, 0);
}

Tensor widen_param(const Tensor& param, const char* op, const char* what) {
  if (!param.defined()) return param;
  check_widenable(param, op, what);
  return contiguous_f32(param);
}

F32Output::F32Output(Tensor& out) : out_(out) {
  work_ = out.dtype() == DType::F32 ? out : scratch_tensor(out.shape(), DType::F32);
}

void F32Output::finish() {
  if (out_.dtype() != DType::F32) copy_elements(work_, out_);
}

std::optional<BlasMatrix> blas_matrix(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  // A stride along an axis of extent 1 is never used, so it may be treated as whatever BLAS needs.
  if (cols == 1 || col_stride == 1) {
    int64_t leading = rows == 1 ? std::max<int64_t>(cols, 1) : row_stride;
    if (leading >= std::max<int64_t>(cols, 1)) return BlasMatrix{CblasNoTrans, blas_int(leading)};
  }
  if (rows == 1 || row_stride == 1) {
    int64_t leading = cols == 1 ? std::max<int64_t>(rows, 1) : col_stride;
    if (leading >= std::max<int64_t>(rows, 1)) return BlasMatrix{CblasTrans, blas_int(leading)};
  }
  return std::nullopt;
}

std::optional<BlasMatrix> blas_matrix_of_rows(const Tensor& tensor) {
  const int64_t cols = tensor.dim(-1);
  const int64_t rows = cols == 0 ? 0 : tensor.numel() / cols;
  // Walk the leading axes inward-out; each must continue the stride pattern of the one inside it.
  int64_t row_stride = 0, next_expected = -1;
  for (int axis = tensor.ndim() - 2; axis >= 0; --axis) {
    if (tensor.shape()[axis] == 1) continue;
    if (next_expected < 0) {
      row_stride = tensor.strides()[axis];
    } else if (tensor.strides()[axis] != next_expected) {
      return std::nullopt;
    }
    next_expected = tensor.strides()[axis] * tensor.shape()[axis];
  }
  return blas_matrix(rows, cols, row_stride, tensor.strides().back());
}

BlasMatrix row_major(int64_t rows, int64_t cols) {
  return BlasMatrix{CblasNoTrans, blas_int(std::max<int64_t>(cols, 1))};
}

blasint blas_int(int64_t value) {
  check(value >= 0 && value <= INT_MAX,
        "matrix dimension " + std::to_string(value) + " exceeds what the BLAS library can address");
  return static_cast<blasint>(value);
}

void sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, BlasMatrix a_layout, const float* b,
           BlasMatrix b_layout, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, a_layout.transpose, b_layout.transpose, blas_int(m), blas_int(n), blas_int(k),
              alpha, a, a_layout.leading_dimension, b, b_layout.leading_dimension, beta, c, blas_int(ldc));
}

}  // namespace canvas::cpu
