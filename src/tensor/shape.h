// Shapes and element strides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace canvas {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);
// Numpy broadcasting of two shapes; throws canvas::Error when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Resolves a possibly negative axis against a rank; throws when out of range.
int normalize_axis(int axis, int rank);

}  // namespace canvas
