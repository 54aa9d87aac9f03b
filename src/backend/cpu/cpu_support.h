// Helpers shared by the CPU kernels: scratch tensors, widening inputs to f32, row iteration, BLAS calls.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "backend/cpu/strided.h"
#include "tensor/tensor.h"
#include "util/thread_pool.h"

namespace canvas::cpu {

// The im2col buffer is capped near this size; larger images are processed in blocks of output rows. It
// is the largest scratch a CPU kernel holds.
inline constexpr int64_t kColumnBufferBytes = int64_t{64} << 20;

// Elementwise work is handed out in tasks of at least this many elements, so thread hand-off stays cheap
// next to the work itself.
inline constexpr int64_t kElementsPerTask = 16384;

// Uninitialized host memory charged to the caller's component and block, with the Scratch role.
Tensor scratch_tensor(const Shape& shape, DType dtype);

// memcpy split across the thread pool: one core cannot saturate the memory bus.
void parallel_copy_bytes(void* dst, const void* src, int64_t bytes);
// Copies between any two plain dtypes and layouts (the CpuBackend::copy kernel).
void copy_elements(const Tensor& src, const Tensor& dst);

// Throws canvas::Error for weights the CPU backend cannot widen element by element.
void check_widenable(const Tensor& tensor, const char* op, const char* what);

// An f32 scratch copy of `tensor`, dense from axis `dense_from` on. Broadcast (stride 0) axes before it
// stay broadcast, so widening an expanded view does not materialize the expansion.
Tensor dense_f32(const Tensor& tensor, int dense_from);
// `tensor` itself when it is f32, else dense_f32(tensor, rank): only the dtype changes.
Tensor as_f32(const Tensor& tensor);
// `tensor` itself when it is contiguous f32, else a contiguous f32 scratch copy.
Tensor contiguous_f32(const Tensor& tensor);
// A norm or bias parameter as contiguous f32, or an undefined tensor when `param` is undefined.
Tensor widen_param(const Tensor& param, const char* op, const char* what);

// Gives a kernel an f32 destination: `out` itself when it is f32, else scratch that finish() narrows into
// `out`, so every op also works for callers that keep activations in another float dtype.
class F32Output {
 public:
  explicit F32Output(Tensor& out);
  Tensor& tensor() { return work_; }
  float* data() { return work_.data<float>(); }
  void finish();

 private:
  Tensor& out_;
  Tensor work_;
};

// Sums in double over four independent lanes: accurate for long rows, and with no serial dependency
// chain on a single accumulator. The fixed lane order keeps results bit-identical run to run.
inline double sum_of(const float* values, int64_t count) {
  double lanes[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    for (int lane = 0; lane < 4; ++lane) lanes[lane] += values[i + lane];
  }
  for (; i < count; ++i) lanes[0] += values[i];
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

inline double sum_of_squares(const float* values, int64_t count) {
  double lanes[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    for (int lane = 0; lane < 4; ++lane)
      lanes[lane] += static_cast<double>(values[i + lane]) * values[i + lane];
  }
  for (; i < count; ++i) lanes[0] += static_cast<double>(values[i]) * values[i];
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

// Runs fn(in_row, out_row) for every row along the last axis of f32 tensors x [..., n] and out [..., m]
// with the same leading shape, in parallel. Rows that are strided in memory are gathered into (and
// scattered back from) contiguous buffers, so fn always sees unit-stride rows.
template <typename Fn>
void for_each_row(const Tensor& x, Tensor& out, Fn&& fn) {
  const int64_t in_length = x.dim(-1), out_length = out.dim(-1);
  const int64_t in_stride = in_length == 1 ? 1 : x.strides().back();
  const int64_t out_stride = out_length == 1 ? 1 : out.strides().back();
  const Shape leading(x.shape().begin(), x.shape().end() - 1);
  const Strides x_leading(x.strides().begin(), x.strides().end() - 1);
  const Strides out_leading(out.strides().begin(), out.strides().end() - 1);
  const StridedLoop<2> loop(leading, {&x_leading, &out_leading});
  const float* x_base = x.data<float>();
  float* out_base = out.data<float>();
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(in_length, 1));
  parallel_for(shape_numel(leading), grain, [&](int64_t begin, int64_t end) {
    std::vector<float> in_buffer(in_stride == 1 ? 0 : in_length);
    std::vector<float> out_buffer(out_stride == 1 ? 0 : out_length);
    loop.for_each_run(begin, end, [&](const StridedLoop<2>::Offsets& offsets, int64_t rows) {
      for (int64_t row = 0; row < rows; ++row) {
        const float* in_row = x_base + offsets[0] + row * loop.inner_stride(0);
        float* out_row = out_base + offsets[1] + row * loop.inner_stride(1);
        if (in_stride != 1) {
          for (int64_t i = 0; i < in_length; ++i) in_buffer[i] = in_row[i * in_stride];
          in_row = in_buffer.data();
        }
        fn(in_row, out_stride == 1 ? out_row : out_buffer.data());
        if (out_stride != 1) {
          for (int64_t i = 0; i < out_length; ++i) out_row[i * out_stride] = out_buffer[i];
        }
      }
    });
  });
}

// How cblas reads a rows x cols f32 matrix stored with the given element strides.
struct BlasMatrix {
  CBLAS_TRANSPOSE transpose;
  blasint leading_dimension;
};
// The layout when BLAS can read the matrix in place (one of its strides is 1), else nullopt.
std::optional<BlasMatrix> blas_matrix(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride);
// `tensor` [..., cols] read as one [rows, cols] matrix, when its leading axes flatten to a single stride.
std::optional<BlasMatrix> blas_matrix_of_rows(const Tensor& tensor);
// The layout of a contiguous row-major rows x cols matrix.
BlasMatrix row_major(int64_t rows, int64_t cols);
// A BLAS dimension; throws when it does not fit the library's integer type.
blasint blas_int(int64_t value);

// c[m, n] (row-major, leading dimension ldc) = alpha * a[m, k] b[k, n] + beta * c. Runs on the calling
// thread; OpenBLAS parallelizes internally.
void sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, BlasMatrix a_layout, const float* b,
           BlasMatrix b_layout, float beta, float* c, int64_t ldc);

}  // namespace canvas::cpu
