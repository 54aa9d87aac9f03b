// Helpers of the CPU op tests (ops_test.cpp, ops_matrix_test.cpp): seeded random inputs, and a tensor's
// elements read through its own strides and dtype, independently of the kernels, to compare with
// references computed here in double precision.
#pragma once

#include <cstring>
#include <random>
#include <source_location>
#include <vector>

#include "tensor/tensor.h"
#include "test_util.h"

namespace canvas::ops_reference {

// The relative tolerance of an f32 op against its double-precision reference.
inline constexpr double kTolerance = 1e-5;

// Uniform values in [low, high), f32, the same for a given seed.
inline Tensor random_tensor(const Shape& shape, uint32_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& value : values) value = distribution(generator);
  return Tensor::from_floats(values, shape);
}

// One element read through the tensor's own strides and dtype, independently of the kernels.
inline double element_at(const Tensor& tensor, const std::vector<int64_t>& index) {
  int64_t offset = 0;
  for (size_t axis = 0; axis < index.size(); ++axis) offset += index[axis] * tensor.strides()[axis];
  const char* base = static_cast<const char*>(tensor.raw_data()) + offset * element_size(tensor.dtype());
  auto read = [&]<typename T>(T) {
    T value;
    std::memcpy(&value, base, sizeof(T));
    return value;
  };
  switch (tensor.dtype()) {
    case DType::F32:
      return read(float{});
    case DType::F16:
      return f16_to_f32(read(uint16_t{}));
    case DType::BF16:
      return bf16_to_f32(read(uint16_t{}));
    case DType::F8_E4M3:
      return f8_e4m3_to_f32(read(uint8_t{}));
    case DType::F8_E5M2:
      return f8_e5m2_to_f32(read(uint8_t{}));
    case DType::I64:
      return static_cast<double>(read(int64_t{}));
    case DType::I32:
      return read(int32_t{});
    default:
      return read(uint8_t{});
  }
}

// All elements in row-major order of the logical shape.
inline std::vector<double> logical_values(const Tensor& tensor) {
  std::vector<double> values;
  std::vector<int64_t> index(tensor.ndim(), 0);
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    values.push_back(element_at(tensor, index));
    for (int axis = tensor.ndim() - 1; axis >= 0; --axis) {
      if (++index[axis] < tensor.dim(axis)) break;
      index[axis] = 0;
    }
  }
  return values;
}

// The output, read through its own strides independently of the kernels, against a reference computed
// here (test::expect_close: the largest deviation over the largest reference magnitude).
inline void expect_close(const Tensor& got, const std::vector<double>& want, double tolerance = kTolerance,
                         std::source_location where = std::source_location::current()) {
  test::expect_close(logical_values(got), want, tolerance, where);
}

// A bool tensor of the flags, row-major.
inline Tensor bool_tensor(const std::vector<uint8_t>& flags, const Shape& shape) {
  Tensor tensor = Tensor::empty(shape, DType::Bool);
  std::memcpy(tensor.raw_data(), flags.data(), flags.size());
  return tensor;
}

}  // namespace canvas::ops_reference
