// Host-side helpers shared by the CUDA backend's kernels: the current-device guard, scratch tensors,
// launch sizing, and the collapsed strided layouts that kernels index with.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"

namespace canvas::cuda {

// Makes `device` current for the calling thread and restores the previous one on exit: kernel
// launches and allocations go to the current device, and a caller may be working with another.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

// Uninitialized memory on `device` charged to the caller's component and block, with the Scratch role.
Tensor scratch_tensor(const Shape& shape, DType dtype, Device device);

// The dtypes the templated kernels are compiled for; other float dtypes (f8) take an f32 detour.
inline bool is_kernel_dtype(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}
// `x` itself when it is contiguous in a kernel dtype, else a contiguous scratch copy in x's dtype
// (or f32 when x's dtype has no kernels).
Tensor contiguous_kernel_input(CudaBackend& backend, const Tensor& x);

// Gives a kernel an output in a kernel dtype: `out` itself, or f32 scratch that finish() narrows into
// `out`.
class KernelOutput {
 public:
  KernelOutput(CudaBackend& backend, Tensor& out);
  Tensor& tensor() { return work_; }
  void finish();

 private:
  CudaBackend& backend_;
  Tensor& out_;
  Tensor work_;
};

inline constexpr int kThreadsPerBlock = 256;
// Grid-stride kernels never need more blocks than this to fill a GPU; capping keeps every grid within
// the launch limits whatever the tensor size.
inline constexpr int64_t kMaxGridBlocks = int64_t{1} << 16;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
// Blocks for a grid-stride loop over `items` with `threads` per block: at least one, at most the cap.
inline unsigned grid_blocks(int64_t items, int threads) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(items, threads), 1, kMaxGridBlocks));
}

inline constexpr int kMaxDims = 8;

// Extents and element strides of N operands walked in lockstep, with axes of extent 1 dropped and
// neighbouring axes merged where every operand steps through them as one. Passed to kernels by value.
template <int N>
struct StridedLayout {
  int rank = 0;
  int64_t extents[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
};

template <int N>
StridedLayout<N> collapse_layout(const Shape& shape, const std::array<const Strides*, N>& strides) {
  StridedLayout<N> layout;
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    if (shape[axis] == 1) continue;
    bool mergeable = layout.rank > 0;
    for (int k = 0; k < N && mergeable; ++k) {
      mergeable = layout.strides[k][layout.rank - 1] == (*strides[k])[axis] * shape[axis];
    }
    if (mergeable) {
      layout.extents[layout.rank - 1] *= shape[axis];
      for (int k = 0; k < N; ++k) layout.strides[k][layout.rank - 1] = (*strides[k])[axis];
      continue;
    }
    check(layout.rank < kMaxDims, "the CUDA backend handles strided tensors of at most " +
                                      std::to_string(kMaxDims) + " non-mergeable axes, got shape " +
                                      shape_str(shape));
    layout.extents[layout.rank] = shape[axis];
    for (int k = 0; k < N; ++k) layout.strides[k][layout.rank] = (*strides[k])[axis];
    ++layout.rank;
  }
  if (layout.rank == 0) {
    layout.extents[0] = 1;
    layout.rank = 1;
  }
  return layout;
}

// Whether every element index and operand offset of the layout fits in int32, so kernels can use
// 32-bit index arithmetic (several times cheaper than 64-bit division).
template <int N>
bool fits_int32(const StridedLayout<N>& layout) {
  int64_t count = 1;
  for (int axis = 0; axis < layout.rank; ++axis) count *= layout.extents[axis];
  if (count > INT_MAX) return false;
  for (int k = 0; k < N; ++k) {
    int64_t last_offset = 0;
    for (int axis = 0; axis < layout.rank; ++axis)
      last_offset += (layout.extents[axis] - 1) * layout.strides[k][axis];
    if (last_offset > INT_MAX) return false;
  }
  return true;
}

// Elements per thread along the innermost axis of a strided walk: index arithmetic then happens once
// per run rather than per element. Runs never cross the innermost axis.
template <int N>
int64_t run_length(const StridedLayout<N>& layout) {
  const int64_t inner = layout.extents[layout.rank - 1];
  return inner % 4 == 0 ? 4 : inner % 2 == 0 ? 2 : 1;
}

// Throws canvas::Error unless `tensor` lives on this backend's device.
void check_on_device(const Tensor& tensor, Device device, const char* op);

}  // namespace canvas::cuda
