#include "tensor/tensor.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace canvas {

namespace {

void check_plain_view(const Tensor& tensor, const char* what) {
  check(!is_block_quantized(tensor.dtype()), std::string(what) + " is not possible on block-quantized " +
                                                 std::string(dtype_name(tensor.dtype())) + " storage");
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t extent : shape) check(extent >= 0, "negative extent in shape " + shape_str(shape));
  Tensor tensor;
  tensor.buffer_ = allocator_for(device).allocate(storage_bytes(dtype, shape_numel(shape)));
  tensor.shape_ = shape;
  tensor.strides_ = contiguous_strides(shape);
  tensor.dtype_ = dtype;
  return tensor;
}

Tensor Tensor::from_buffer(std::shared_ptr<Buffer> buffer, const Shape& shape, DType dtype,
                           int64_t byte_offset) {
  check(buffer != nullptr, "tensor from a null buffer");
  int64_t bytes = storage_bytes(dtype, shape_numel(shape));
  check(byte_offset >= 0 && byte_offset + bytes <= buffer->bytes(),
        "tensor of " + std::to_string(bytes) + " bytes at offset " + std::to_string(byte_offset) +
            " does not fit a buffer of " + std::to_string(buffer->bytes()) + " bytes");
  Tensor tensor;
  tensor.buffer_ = std::move(buffer);
  tensor.byte_offset_ = byte_offset;
  tensor.shape_ = shape;
  tensor.strides_ = contiguous_strides(shape);
  tensor.dtype_ = dtype;
  return tensor;
}

Tensor Tensor::from_floats(std::span<const float> values, const Shape& shape) {
  check(static_cast<int64_t>(values.size()) == shape_numel(shape),
        std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor tensor = empty(shape, DType::F32);
  // An empty span may have no data pointer, which memcpy must not be given even for no bytes.
  if (!values.empty()) std::memcpy(tensor.raw_data(), values.data(), values.size_bytes());
  return tensor;
}

Tensor Tensor::from_ints(std::span<const int64_t> values, const Shape& shape, DType dtype) {
  check(static_cast<int64_t>(values.size()) == shape_numel(shape),
        std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  check(dtype == DType::I64 || dtype == DType::I32, "from_ints makes i64 or i32 tensors");
  Tensor tensor = empty(shape, dtype);
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::I64) {
      tensor.data<int64_t>()[i] = values[i];
    } else {
      tensor.data<int32_t>()[i] = static_cast<int32_t>(values[i]);
    }
  }
  return tensor;
}

Tensor Tensor::strided_view(const Tensor& base, const Shape& shape, const Strides& strides) {
  check_plain_view(base, "a strided view");
  check(shape.size() == strides.size(), "strided view with " + std::to_string(shape.size()) +
                                            " extents and " + std::to_string(strides.size()) + " strides");
  Tensor result = base;
  result.shape_ = shape;
  result.strides_ = strides;
  return result;
}

int64_t Tensor::dim(int axis) const {
  return shape_[normalize_axis(axis, ndim())];
}

Device Tensor::device() const {
  return buffer_ ? buffer_->device() : Device::cpu();
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  check(defined(), "access to an undefined tensor");
  return static_cast<char*>(buffer_->data()) + byte_offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  check(is_contiguous(), "view of a non-contiguous tensor of shape " + shape_str(shape_));
  Shape resolved = shape;
  int64_t known = 1;
  int inferred_axis = -1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      check(inferred_axis < 0, "view shape " + shape_str(shape) + " has more than one -1");
      inferred_axis = static_cast<int>(i);
    } else {
      known *= resolved[i];
    }
  }
  if (inferred_axis >= 0) {
    check(known > 0 && numel() % known == 0, "cannot view " + shape_str(shape_) + " as " + shape_str(shape));
    resolved[inferred_axis] = numel() / known;
  }
  check(shape_numel(resolved) == numel(), "cannot view " + shape_str(shape_) + " as " + shape_str(shape));
  Tensor result = *this;
  result.shape_ = resolved;
  result.strides_ = contiguous_strides(resolved);
  return result;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int>& order) const {
  check_plain_view(*this, "permute");
  check(static_cast<int>(order.size()) == ndim(),
        "permute order has the wrong rank for " + shape_str(shape_));
  std::vector<bool> seen(order.size(), false);
  Tensor result = *this;
  for (size_t i = 0; i < order.size(); ++i) {
    int axis = normalize_axis(order[i], ndim());
    check(!seen[axis], "permute order repeats an axis");
    seen[axis] = true;
    result.shape_[i] = shape_[axis];
    result.strides_[i] = strides_[axis];
  }
  return result;
}

Tensor Tensor::transpose(int axis_a, int axis_b) const {
  std::vector<int> order(ndim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[normalize_axis(axis_a, ndim())], order[normalize_axis(axis_b, ndim())]);
  return permute(order);
}

Tensor Tensor::slice(int axis, int64_t start, int64_t end) const {
  int resolved = normalize_axis(axis, ndim());
  check(0 <= start && start <= end && end <= shape_[resolved],
        "slice [" + std::to_string(start) + ", " + std::to_string(end) + ") out of range for axis " +
            std::to_string(axis) + " of " + shape_str(shape_));
  if (is_block_quantized(dtype_)) {
    // Whole leading rows of a contiguous quantized tensor stay addressable.
    check(resolved == 0 && is_contiguous(),
          "block-quantized tensors can only be sliced along their first axis");
  }
  Tensor result = *this;
  int64_t row_elements = strides_[resolved];
  result.byte_offset_ += is_block_quantized(dtype_) ? storage_bytes(dtype_, start * row_elements)
                                                    : start * row_elements * element_size(dtype_);
  result.shape_[resolved] = end - start;
  return result;
}

Tensor Tensor::select(int axis, int64_t index) const {
  int resolved = normalize_axis(axis, ndim());
  Tensor result = slice(resolved, index, index + 1);
  result.shape_.erase(result.shape_.begin() + resolved);
  result.strides_.erase(result.strides_.begin() + resolved);
  return result;
}

Tensor Tensor::unsqueeze(int axis) const {
  int resolved = normalize_axis(axis, ndim() + 1);
  Tensor result = *this;
  int64_t stride = resolved < ndim() ? strides_[resolved] * shape_[resolved] : 1;
  result.shape_.insert(result.shape_.begin() + resolved, 1);
  result.strides_.insert(result.strides_.begin() + resolved, stride);
  return result;
}

Tensor Tensor::squeeze(int axis) const {
  int resolved = normalize_axis(axis, ndim());
  check(shape_[resolved] == 1,
        "squeeze of axis " + std::to_string(axis) + " with extent " + std::to_string(shape_[resolved]));
  Tensor result = *this;
  result.shape_.erase(result.shape_.begin() + resolved);
  result.strides_.erase(result.strides_.begin() + resolved);
  return result;
}

}  // namespace canvas
