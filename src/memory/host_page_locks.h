// Page-locking host memory in place. A streamed checkpoint is read from its memory mapping, whose pages
// are the page cache's own; locking those pages lets a GPU's copy engine read them directly at full
// PCIe speed, with no pinned copy of the weights and no host memcpy into a staging ring. The bytes stay
// where they are: locking only keeps them resident, which streaming needs anyway.
//
// A GPU backend registers the HostPageLocker that does the locking (cudaHostRegister, read-only) when it
// starts. Every locked range is recorded here with its owner, so the upload path can tell which parts of
// a source are locked and reports can say how much is.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "memory/allocator.h"

namespace canvas {

class HostPageLocker {
 public:
  virtual ~HostPageLocker() = default;
  // Locks the page-aligned [begin, begin + bytes) for device reads. Throws canvas::Error, leaving nothing
  // locked and no error pending in the device runtime, when the system refuses.
  virtual void lock(const void* begin, int64_t bytes) = 0;
  // Undoes lock(begin, ...). Copies reading the range must have finished.
  virtual void unlock(const void* begin) = 0;
};

// A byte run of a source range, locked or not.
struct HostRun {
  int64_t offset = 0;  // from the start of the range asked about
  int64_t bytes = 0;
  bool locked = false;
};

class HostPageLocks {
 public:
  // The locker of the process's GPU backend; nullptr when it has none or its devices cannot read
  // page-locked read-only memory (then nothing is locked and every upload stages).
  void set_locker(HostPageLocker* locker);
  bool available() const;

  // Locks [begin, begin + bytes) for `owner` and records it. The range is page-aligned and overlaps no
  // locked range. Throws canvas::Error when unavailable or when the locker fails (nothing recorded).
  void lock(const void* begin, int64_t bytes, const MemoryOwner& owner);
  void unlock(const void* begin);

  // [begin, begin + bytes) cut into runs at the edges of locked ranges, in order.
  std::vector<HostRun> runs(const void* begin, int64_t bytes) const;
  int64_t locked_bytes() const;
  int64_t locked_bytes(const std::string& component) const;

 private:
  struct Range {
    int64_t bytes;
    MemoryOwner owner;
  };
  mutable std::mutex mutex_;
  HostPageLocker* locker_ = nullptr;
  std::map<uintptr_t, Range> ranges_;  // by start address
  int64_t locked_bytes_ = 0;
};

HostPageLocks& host_page_locks();

// The size of a host memory page, to which locked ranges are aligned.
int64_t host_page_bytes();

}  // namespace canvas
