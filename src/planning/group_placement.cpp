#include "planning/group_placement.h"

#include <algorithm>
#include <optional>

#include "backend/backend.h"
#include "planning/weight_page_locks.h"

namespace canvas {

namespace {

// Four chunks of the ring are in flight at once: enough to keep the copy engine fed from several copying
// threads, little pinned memory.
constexpr int64_t kStagingBytes = int64_t{512} << 20;

}  // namespace

void place_groups(std::vector<PlacedGroup>& groups, Device device, int64_t page_lock_budget) {
  std::vector<WeightGroup> pending;
  for (const PlacedGroup& group : groups)
    if (!group.placed()) pending.push_back(group.group());
  if (pending.empty()) return;
  // Destroyed in reverse: the queue waits for its copies, then the copies are freed on failure, then the
  // pages are unlocked, once nothing reads them.
  std::optional<WeightPageLocks> locks;
  if (page_lock_budget > 0 && !device.is_cpu())
    locks.emplace(pending, page_lock_budget,
                  MemoryOwner{pending.front().owner.component, -1, MemoryRole::Weights});
  std::vector<std::vector<Tensor>> copies(groups.size());
  Backend& backend = backend_for(device);
  int64_t bytes = 0;
  for (const WeightGroup& group : pending) bytes += group.bytes();
  std::unique_ptr<UploadQueue> queue = backend.create_upload_queue(std::min(bytes, kStagingBytes));
  Fence last;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].placed()) continue;
    const WeightGroup& group = groups[i].group();
    OwnerScope owner(group.owner);
    std::vector<UploadCopy> batch;
    for (const Tensor* tensor : group.tensors) {
      check(tensor->device().is_cpu(), "weights to place must come from the host (" + group.label() + ")");
      copies[i].push_back(Tensor::empty(tensor->shape(), tensor->dtype(), device));
      batch.push_back({tensor->contiguous(), copies[i].back()});
    }
    last = queue->upload(std::move(batch), nullptr, nullptr);
  }
  queue->compute_wait(last);
  backend.synchronize();
  queue.reset();
  locks.reset();
  std::vector<size_t> placed_now;
  try {
    for (size_t i = 0; i < groups.size(); ++i) {
      if (copies[i].empty()) continue;
      groups[i].adopt(std::move(copies[i]));
      placed_now.push_back(i);
    }
  } catch (...) {
    for (size_t i : placed_now) groups[i].release();
    throw;
  }
}

}  // namespace canvas
