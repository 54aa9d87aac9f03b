#include "tensor/shape.h"

#include <algorithm>

#include "util/error.h"

namespace canvas {

int64_t shape_numel(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) count *= extent;
  return count;
}

Strides contiguous_strides(const Shape& shape) {
  Strides strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape result(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t extent_a = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t extent_b = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    check(extent_a == extent_b || extent_a == 1 || extent_b == 1,
          "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    result[i] = extent_a == 1 ? extent_b : extent_a;
  }
  return result;
}

int normalize_axis(int axis, int rank) {
  int resolved = axis < 0 ? axis + rank : axis;
  check(resolved >= 0 && resolved < rank,
        "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return resolved;
}

}  // namespace canvas
