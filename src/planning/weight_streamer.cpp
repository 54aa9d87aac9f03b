#include "planning/weight_streamer.h"

#include <algorithm>

#include "profile/profiler.h"

namespace canvas {

int64_t WeightStreamer::ring_bytes(const std::vector<WeightGroup>& groups, int slots) {
  int64_t largest = 0;
  for (const WeightGroup& group : groups) largest = std::max(largest, group.slot_bytes());
  return largest * slots;
}

WeightStreamer::WeightStreamer(Device device, std::vector<WeightGroup> groups, int slots, bool cyclic,
                               const std::string& component, int64_t staging_bytes, Profiler* profiler)
    : device_(device), groups_(std::move(groups)), profiler_(profiler), cyclic_(cyclic) {
  check(slots >= 1, "a weight stream needs at least one slot");
  for (const WeightGroup& group : groups_) {
    std::vector<Tensor> host;
    for (const Tensor* tensor : group.tensors) {
      check(tensor->is_contiguous() && tensor->device().is_cpu(),
            "streamed weights must be contiguous host tensors (" + group.owner.str() + ")");
      host.push_back(*tensor);
    }
    host_.push_back(std::move(host));
    offsets_.push_back(slot_offsets(group));
    slot_bytes_ = std::max(slot_bytes_, group.slot_bytes());
  }
  OwnerScope owner({component, -1, MemoryRole::Staging});
  for (int i = 0; i < slots; ++i)
    slots_.push_back({allocator_for(device).allocate(slot_bytes_), nullptr, true});
  queue_ = backend_for(device).create_upload_queue(staging_bytes);
  fill();
}

WeightStreamer::~WeightStreamer() {
  // Uploads still in flight write into slots that are about to be freed.
  backend_for(device_).synchronize();
  if (acquired_slot_ >= 0) {
    const WeightGroup& group = groups_[acquired_group_];
    for (size_t i = 0; i < group.tensors.size(); ++i) *group.tensors[i] = host_[acquired_group_][i];
  }
}

void WeightStreamer::fill() {
  for (int slot = 0; slot < static_cast<int>(slots_.size()); ++slot) {
    if (!slots_[slot].free || groups_.empty()) continue;
    if (!cyclic_ && uploads_queued_ == groups_.size()) return;
    const size_t index = next_upload_;
    const WeightGroup& group = groups_[index];
    std::vector<UploadCopy> copies;
    for (size_t i = 0; i < group.tensors.size(); ++i) {
      const Tensor& source = host_[index][i];
      copies.push_back({source, Tensor::from_buffer(slots_[slot].buffer, source.shape(), source.dtype(),
                                                    offsets_[index][i])});
      bytes_uploaded_ += source.nbytes();
    }
    UploadTimes times;
    Fence done = queue_->upload(std::move(copies), slots_[slot].reuse_after, profiler_ ? &times : nullptr);
    if (profiler_)
      profiler_->record_interval("copy", group.label(), std::move(times.start), std::move(times.end));
    slots_[slot].free = false;
    pending_.push_back({index, slot, std::move(done)});
    next_upload_ = (next_upload_ + 1) % groups_.size();
    ++uploads_queued_;
  }
}

void WeightStreamer::acquire(size_t index) {
  check(index == next_acquire_ && acquired_slot_ < 0,
        "weight stream: group " + std::to_string(index) + " acquired out of order");
  check(cyclic_ || uploads_queued_ > 0, "weight stream has no groups");
  if (pending_.empty()) fill();
  check(!pending_.empty() && pending_.front().group == index,
        "weight stream: no upload queued for group " + std::to_string(index));
  Upload upload = std::move(pending_.front());
  pending_.pop_front();
  queue_->compute_wait(upload.done);
  const WeightGroup& group = groups_[index];
  for (size_t i = 0; i < group.tensors.size(); ++i) {
    const Tensor& source = host_[index][i];
    *group.tensors[i] =
        Tensor::from_buffer(slots_[upload.slot].buffer, source.shape(), source.dtype(), offsets_[index][i]);
  }
  acquired_slot_ = upload.slot;
  acquired_group_ = index;
  next_acquire_ = (next_acquire_ + 1) % groups_.size();
}

void WeightStreamer::release(size_t index) {
  check(acquired_slot_ >= 0 && index == acquired_group_,
        "weight stream: group " + std::to_string(index) + " released without being acquired");
  const WeightGroup& group = groups_[index];
  for (size_t i = 0; i < group.tensors.size(); ++i) *group.tensors[i] = host_[index][i];
  Slot& slot = slots_[acquired_slot_];
  slot.reuse_after = queue_->compute_fence();
  slot.free = true;
  acquired_slot_ = -1;
  fill();
}

}  // namespace canvas
