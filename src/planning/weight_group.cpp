#include "planning/weight_group.h"

namespace canvas {

namespace {

// cuBLASLt and the vectorized kernels want 16-byte aligned operands; 256 also keeps every tensor on
// its own cache lines and matches cudaMalloc's own alignment.
constexpr int64_t kSlotAlignment = 256;

int64_t aligned(int64_t bytes) {
  return (bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
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

void PlacedGroup::adopt(std::vector<Tensor> copies) {
  check(!placed() && copies.size() == group_.tensors.size(),
        "placing " + group_.label() + ": one copy per tensor is needed");
  for (size_t i = 0; i < group_.tensors.size(); ++i) {
    host_.push_back(*group_.tensors[i]);
    *group_.tensors[i] = std::move(copies[i]);
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
