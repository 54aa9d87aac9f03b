// Walking several same-shaped strided views in lockstep. Axes of extent 1 are dropped and neighbouring
// axes that every operand steps through as one are merged, so contiguous and broadcast operands end up
// with few, long innermost runs that kernels can process as plain (or stride-0) loops.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tensor/shape.h"

namespace canvas::cpu {

template <size_t N>
class StridedLoop {
 public:
  using Offsets = std::array<int64_t, N>;

  StridedLoop(const Shape& shape, const std::array<const Strides*, N>& strides) {
    for (size_t axis = 0; axis < shape.size(); ++axis) {
      if (shape[axis] == 1) continue;
      bool mergeable = !extents_.empty();
      for (size_t k = 0; k < N && mergeable; ++k) {
        mergeable = strides_[k].back() == (*strides[k])[axis] * shape[axis];
      }
      if (mergeable) {
        extents_.back() *= shape[axis];
        for (size_t k = 0; k < N; ++k) strides_[k].back() = (*strides[k])[axis];
      } else {
        extents_.push_back(shape[axis]);
        for (size_t k = 0; k < N; ++k) strides_[k].push_back((*strides[k])[axis]);
      }
    }
    if (extents_.empty()) {
      extents_.push_back(1);
      for (size_t k = 0; k < N; ++k) strides_[k].push_back(0);
    }
  }

  // Element stride of operand k along the innermost run.
  int64_t inner_stride(size_t k) const { return strides_[k].back(); }

  // Visits the linear element range [begin, end) (row-major over the shared shape) as runs along the
  // innermost axis: fn(offsets, count) gets each operand's element offset of the run's first element.
  template <typename Fn>
  void for_each_run(int64_t begin, int64_t end, Fn&& fn) const {
    const size_t rank = extents_.size();
    std::vector<int64_t> index(rank);
    Offsets offsets{};
    int64_t remainder = begin;
    for (size_t axis = rank; axis-- > 0;) {
      index[axis] = remainder % extents_[axis];
      remainder /= extents_[axis];
      for (size_t k = 0; k < N; ++k) offsets[k] += index[axis] * strides_[k][axis];
    }
    const size_t inner = rank - 1;
    for (int64_t position = begin; position < end;) {
      int64_t count = std::min(extents_[inner] - index[inner], end - position);
      fn(offsets, count);
      position += count;
      if (position >= end) break;
      // The run reached the end of the innermost axis: rewind it and carry into the outer axes.
      for (size_t k = 0; k < N; ++k) offsets[k] -= index[inner] * strides_[k][inner];
      index[inner] = 0;
      for (size_t axis = inner; axis-- > 0;) {
        ++index[axis];
        for (size_t k = 0; k < N; ++k) offsets[k] += strides_[k][axis];
        if (index[axis] < extents_[axis]) break;
        for (size_t k = 0; k < N; ++k) offsets[k] -= index[axis] * strides_[k][axis];
        index[axis] = 0;
      }
    }
  }

 private:
  Shape extents_;
  std::array<Strides, N> strides_;
};

}  // namespace canvas::cpu
