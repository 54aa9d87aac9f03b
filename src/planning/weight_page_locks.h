// Locks the page-cache pages that streamed weights are read from, in place and in the background, so
// their uploads go straight from the checkpoint's mapping to the copy engine (memory/host_page_locks.h).
//
// Locking starts when a component's placement is made, before the job's earlier phases run, and goes in
// chunks in the blocks' order, so the first steps gain from whatever is locked by then. Each chunk is
// faulted in first (from the page cache, or from disk when cold). A refusal stops the locking and leaves
// the rest of the weights to the staging ring: a lock only ever makes a copy faster.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "memory/host_page_locks.h"
#include "planning/weight_group.h"

namespace canvas {

// Whole pages of host memory.
struct PageSpan {
  const std::byte* begin = nullptr;
  int64_t bytes = 0;
};

// The pages to lock for `groups`: whole groups in order while their bytes fit `budget`, of their tensors
// that view a mapped checkpoint (read-only external buffers; converted copies are not locked). Tensors
// that touch are merged; each merged stretch keeps only the pages wholly inside it (its partial end pages
// may be another component's, which would then be locked twice) and is cut into spans of at most
// `chunk_bytes`. In address order.
std::vector<PageSpan> page_spans(const std::vector<WeightGroup>& groups, int64_t budget, int64_t page_bytes,
                                 int64_t chunk_bytes);

class WeightPageLocks {
 public:
  // Starts locking page_spans(groups, budget, ...) on a thread of its own, charged to `owner`.
  WeightPageLocks(const std::vector<WeightGroup>& groups, int64_t budget, MemoryOwner owner,
                  HostPageLocks& locks = host_page_locks());
  // Stops the locking and unlocks every span. No copy may still be reading them.
  ~WeightPageLocks();
  WeightPageLocks(const WeightPageLocks&) = delete;
  WeightPageLocks& operator=(const WeightPageLocks&) = delete;

  // Bytes locked so far, and the bytes the locking is after.
  int64_t locked_bytes() const { return locked_bytes_.load(); }
  int64_t target_bytes() const { return target_bytes_; }
  // Waits for the locking to end; returns why it stopped early, if it did.
  std::optional<std::string> wait();

 private:
  void run();

  HostPageLocks& locks_;
  MemoryOwner owner_;
  std::vector<PageSpan> spans_;
  // The mapped files stay mapped while their pages are locked.
  std::vector<std::shared_ptr<Buffer>> buffers_;
  int64_t target_bytes_ = 0;
  std::vector<const std::byte*> locked_;  // written by the thread only; read once it has joined
  std::atomic<int64_t> locked_bytes_{0};
  std::atomic<bool> stopping_{false};
  std::optional<std::string> failure_;
  std::thread thread_;
  std::mutex wait_mutex_;
};

}  // namespace canvas
