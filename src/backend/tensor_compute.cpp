// The Tensor members that compute (zero-filling, copies, casts, moves between devices). They are declared
// with the tensor (tensor/tensor.h) but run backend ops, so they are defined here, in the layer that has
// them: tensor/ itself never includes the backend.
#include "backend/ops.h"
#include "tensor/tensor.h"

namespace canvas {

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor tensor = empty(shape, dtype, device);
  ops::fill_zero(tensor);
  return tensor;
}

Tensor Tensor::contiguous() const {
  return is_contiguous() ? *this : ops::contiguous(*this);
}

Tensor Tensor::to(DType dtype) const {
  return dtype == dtype_ ? *this : ops::cast(*this, dtype);
}

Tensor Tensor::to(Device device) const {
  return device == this->device() ? *this : ops::to_device(*this, device);
}

std::vector<float> Tensor::to_floats() const {
  Tensor host = to(Device::cpu()).contiguous();
  std::vector<float> values(static_cast<size_t>(numel()));
  if (!values.empty()) convert_to_f32(dtype_, host.raw_data(), values.data(), numel());
  return values;
}

}  // namespace canvas
