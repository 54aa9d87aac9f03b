// Weights that move together between host and device: a transformer block, the part of a block one
// phase reads, a text-encoder layer, or a component's weights outside its blocks. A group points at
// the model's own tensors, so moving a group is what the model then computes with.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "memory/allocator.h"
#include "tensor/tensor.h"

namespace canvas {

struct WeightGroup {
  MemoryOwner owner;  // component, block (-1 outside the blocks), role Weights
  std::vector<Tensor*> tensors;
  // Run once the group's tensors are on the device as a whole (PlacedGroup, not a streaming ring), to
  // change the device copies, e.g. fold a LoRA into a weight (models/lora.h). They may replace the
  // group's tensors; releasing the group puts the host tensors back all the same.
  std::vector<std::function<void()>> on_placed;

  int64_t bytes() const;
  // Bytes of the group laid out in one device slot, each tensor aligned for vector loads.
  int64_t slot_bytes() const;
  bool empty() const { return tensors.empty(); }
  // Its name in a profile, e.g. "transformer block 17".
  std::string label() const;
};

// Offset of each tensor in a slot laid out as slot_bytes() describes.
std::vector<int64_t> slot_offsets(const WeightGroup& group);

// A group's weights on a device for as long as it stays placed (place_groups, group_placement.h); the
// host tensors go back when released. Destroying a placed group releases it.
class PlacedGroup {
 public:
  explicit PlacedGroup(WeightGroup group) : group_(std::move(group)) {}
  ~PlacedGroup() { release(); }
  PlacedGroup(PlacedGroup&&) = default;
  PlacedGroup& operator=(PlacedGroup&&) = delete;
  PlacedGroup(const PlacedGroup&) = delete;
  PlacedGroup& operator=(const PlacedGroup&) = delete;

  // Points the group's tensors at `copies` (their device copies, in order, charged to the group's owner),
  // then runs the group's on_placed. Throws with the host tensors back in place.
  void adopt(std::vector<Tensor> copies);
  void release();
  bool placed() const { return !host_.empty(); }
  const WeightGroup& group() const { return group_; }

 private:
  WeightGroup group_;
  std::vector<Tensor> host_;
};

}  // namespace canvas
