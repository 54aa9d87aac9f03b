// A strided view onto a Buffer: the one tensor type used by every model and backend.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "memory/allocator.h"
#include "memory/device.h"
#include "tensor/dtype.h"
#include "tensor/shape.h"

namespace canvas {

class Tensor {
 public:
  Tensor() = default;

  // Uninitialized storage from the device's allocator, charged to the current owner.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  // Zero-filled by the device's backend (backend/tensor_compute.cpp).
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // Wraps existing bytes (e.g. a mapped checkpoint) without copying. Byte offset into the buffer.
  static Tensor from_buffer(std::shared_ptr<Buffer> buffer, const Shape& shape, DType dtype,
                            int64_t byte_offset = 0);
  // Host f32/i32/i64 tensors from values, mostly for tests and small tables.
  static Tensor from_floats(std::span<const float> values, const Shape& shape);
  static Tensor from_ints(std::span<const int64_t> values, const Shape& shape, DType dtype = DType::I64);
  // A view of `base`'s first element with arbitrary shape and element strides (e.g. zero for broadcast).
  static Tensor strided_view(const Tensor& base, const Shape& shape, const Strides& strides);

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int axis) const;
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_contiguous() const;
  int64_t nbytes() const { return storage_bytes(dtype_, numel()); }
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }
  int64_t byte_offset() const { return byte_offset_; }

  // Pointer to the first element. Host pointers only for host tensors; device pointers for the backend.
  void* raw_data() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw_data());
  }

  // Views share the buffer. They throw canvas::Error on impossible requests.
  Tensor view(const Shape& shape) const;     // needs a contiguous tensor; one extent may be -1
  Tensor reshape(const Shape& shape) const;  // view if contiguous, else a contiguous copy
  Tensor permute(const std::vector<int>& order) const;
  Tensor transpose(int axis_a, int axis_b) const;
  Tensor slice(int axis, int64_t start, int64_t end) const;
  Tensor select(int axis, int64_t index) const;
  Tensor unsqueeze(int axis) const;
  Tensor squeeze(int axis) const;

  // These compute, so they run backend ops: defined in backend/tensor_compute.cpp.
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  // Copies out the values widened to f32 (any plain dtype, any device).
  std::vector<float> to_floats() const;

 private:
  std::shared_ptr<Buffer> buffer_;
  int64_t byte_offset_ = 0;
  Shape shape_;
  Strides strides_;
  DType dtype_ = DType::F32;
};

}  // namespace canvas
