// Runs groups of weights that do not fit on the device through a fixed ring of device slots. Slots are
// allocated once; each group is copied into the next free slot on the backend's upload queue while
// the device computes with the groups before it, and the compute waits only for the copy it needs.
//
// Groups are acquired in the order given, cyclically (a denoising step visits the streamed blocks in
// the same order every step), or once through for a one-pass phase.
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "planning/weight_group.h"

namespace canvas {

class Profiler;

class WeightStreamer {
 public:
  // `groups` hold host tensors (contiguous, in the dtype the device computes with). `slots` >= 1 device
  // slots of the largest group's slot_bytes(), charged to {component, -1, Staging}. A `profiler` gets
  // each upload as a "copy" interval named by its group's label(); null records nothing.
  WeightStreamer(Device device, std::vector<WeightGroup> groups, int slots, bool cyclic,
                 const std::string& component, int64_t staging_bytes, Profiler* profiler);
  ~WeightStreamer();
  WeightStreamer(const WeightStreamer&) = delete;
  WeightStreamer& operator=(const WeightStreamer&) = delete;

  // Points group `index`'s tensors at its slot; compute queued from here on waits for its copy.
  // Indices must come in order (0, 1, ..., then 0 again when cyclic).
  void acquire(size_t index);
  // The group's compute is queued: its slot is refilled once the device has passed this point. The
  // tensors point back at the host copies.
  void release(size_t index);

  size_t size() const { return groups_.size(); }
  int slots() const { return static_cast<int>(slots_.size()); }
  int64_t slot_bytes() const { return slot_bytes_; }
  int64_t bytes_uploaded() const { return bytes_uploaded_; }
  // Device bytes `slots` slots need for these groups.
  static int64_t ring_bytes(const std::vector<WeightGroup>& groups, int slots);

 private:
  struct Slot {
    std::shared_ptr<Buffer> buffer;
    Fence reuse_after;  // compute that last read the slot
    bool free = true;
  };
  struct Upload {
    size_t group;
    int slot;
    Fence done;
  };
  // Queues uploads into free slots for the next groups in acquisition order.
  void fill();

  Device device_;
  std::vector<WeightGroup> groups_;
  std::vector<std::vector<Tensor>> host_;  // each group's host tensors
  std::vector<std::vector<int64_t>> offsets_;
  std::vector<Slot> slots_;
  std::unique_ptr<UploadQueue> queue_;
  Profiler* profiler_;
  std::deque<Upload> pending_;
  bool cyclic_;
  size_t next_upload_ = 0;
  size_t uploads_queued_ = 0;
  size_t next_acquire_ = 0;
  int acquired_slot_ = -1;
  size_t acquired_group_ = 0;
  int64_t slot_bytes_ = 0;
  int64_t bytes_uploaded_ = 0;
};

}  // namespace canvas
