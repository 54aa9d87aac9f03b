#include "planning/weight_group.h"

#include <cstring>

namespace canvas {

namespace {

// cuBLASLt and the vectorized kernels want 16-byte aligned operands; 256 also keeps every tensor on
// its own cache lines and matches cudaMalloc's own alignment.
constexpr int64_t kSlotAlignment = 256;

int64_t aligned(int64_t bytes) {
  return (bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
}

// A copy in `device` memory even when the tensor already lives there: on the CPU, placing a group means
// moving it out of the mapped checkpoint into memory the allocator (and its budget) accounts for.
Tensor copy_to(const Tensor& tensor, Device device) {
  if (tensor.device() != device) return tensor.to(device);
  check(device.is_cpu(), "weights to place must come from the host");
  Tensor source = tensor.contiguous();
  Tensor copy = Tensor::empty(tensor.shape(), tensor.dtype(), device);
  std::memcpy(copy.raw_data(), source.raw_data(), static_cast<size_t>(tensor.nbytes()));
  return copy;
}

}  // namespace

int64_t WeightGroup::bytes() const {
  int64_t total = 0;
  for (const Tensor* tensor : tensors) total += tensor->nbytes();
  return total;
}

std::string WeightGroup::label() const {
  return owner.block < 0 ? owner.component : owner.component + " block " + std::to_string(owner.block);
}

int64_t WeightGroup::slot_bytes() const {
  int64_t total = 0;
  for (const Tensor* tensor : tensors) total += aligned(tensor->nbytes());
  return total;
}

std::vector<int64_t> slot_offsets(const WeightGroup& group) {
  std::vector<int64_t> offsets;
  int64_t offset = 0;
  for (const Tensor* tensor : group.tensors) {
    offsets.push_back(offset);
    offset += aligned(tensor->nbytes());
  }
  return offsets;
}

void PlacedGroup::place(Device device) {
  if (placed()) return;
  OwnerScope owner(group_.owner);
  std::vector<Tensor> on_device;
  on_device.reserve(group_.tensors.size());
  for (const Tensor* tensor : group_.tensors) on_device.push_back(copy_to(*tensor, device));
  for (size_t i = 0; i < group_.tensors.size(); ++i) {
    host_.push_back(*group_.tensors[i]);
    *group_.tensors[i] = std::move(on_device[i]);
  }
  try {
    for (const std::function<void()>& change : group_.on_placed) change();
  } catch (...) {
    release();
    throw;
  }
}

void PlacedGroup::release() {
  for (size_t i = 0; i < host_.size(); ++i) *group_.tensors[i] = std::move(host_[i]);
  host_.clear();
}

}  // namespace canvas
