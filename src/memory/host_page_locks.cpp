#include "memory/host_page_locks.h"

#include <unistd.h>

#include <algorithm>

namespace canvas {

void HostPageLocks::set_locker(HostPageLocker* locker) {
  std::lock_guard lock(mutex_);
  check(ranges_.empty(), "the host page locker cannot change while pages are locked");
  locker_ = locker;
}

bool HostPageLocks::available() const {
  std::lock_guard lock(mutex_);
  return locker_ != nullptr;
}

void HostPageLocks::lock(const void* begin, int64_t bytes, const MemoryOwner& owner) {
  const auto start = reinterpret_cast<uintptr_t>(begin);
  const auto page = static_cast<uintptr_t>(host_page_bytes());
  check(bytes > 0 && start % page == 0 && static_cast<uintptr_t>(bytes) % page == 0,
        "page locking needs whole pages, got " + std::to_string(bytes) + " bytes at an offset of " +
            std::to_string(start % page) + " into a page");
  // The locker runs under the lock: two threads must not lock overlapping ranges between the check and
  // the record.
  std::lock_guard lock(mutex_);
  check(locker_ != nullptr, "page locking is not available on this machine");
  const auto after = ranges_.lower_bound(start + static_cast<uintptr_t>(bytes));
  if (after != ranges_.begin()) {
    const auto before = std::prev(after);
    check(before->first + static_cast<uintptr_t>(before->second.bytes) <= start,
          "page locking: the range overlaps one locked for " + before->second.owner.str());
  }
  locker_->lock(begin, bytes);
  ranges_.emplace(start, Range{bytes, owner});
  locked_bytes_ += bytes;
}

void HostPageLocks::unlock(const void* begin) {
  std::lock_guard lock(mutex_);
  const auto range = ranges_.find(reinterpret_cast<uintptr_t>(begin));
  check(range != ranges_.end(), "page locking: no range is locked at this address");
  locker_->unlock(begin);
  locked_bytes_ -= range->second.bytes;
  ranges_.erase(range);
}

std::vector<HostRun> HostPageLocks::runs(const void* begin, int64_t bytes) const {
  const auto start = reinterpret_cast<uintptr_t>(begin);
  const uintptr_t end = start + static_cast<uintptr_t>(bytes);
  std::vector<HostRun> runs;
  auto add = [&](uintptr_t from, uintptr_t to, bool locked) {
    if (from >= to) return;
    const auto offset = static_cast<int64_t>(from - start), length = static_cast<int64_t>(to - from);
    if (!runs.empty() && runs.back().locked == locked)
      runs.back().bytes += length;
    else
      runs.push_back({offset, length, locked});
  };
  std::lock_guard lock(mutex_);
  // The first range that could cover `start`, then each one after it that begins before `end`.
  auto range = ranges_.upper_bound(start);
  if (range != ranges_.begin()) --range;
  uintptr_t position = start;
  for (; range != ranges_.end() && range->first < end; ++range) {
    const uintptr_t range_end = range->first + static_cast<uintptr_t>(range->second.bytes);
    if (range_end <= position) continue;
    add(position, std::max(position, range->first), false);
    const uintptr_t locked_from = std::max(position, range->first);
    const uintptr_t locked_to = std::min(end, range_end);
    add(locked_from, locked_to, true);
    position = locked_to;
  }
  add(position, end, false);
  return runs;
}

int64_t HostPageLocks::locked_bytes() const {
  std::lock_guard lock(mutex_);
  return locked_bytes_;
}

int64_t HostPageLocks::locked_bytes(const std::string& component) const {
  std::lock_guard lock(mutex_);
  int64_t total = 0;
  for (const auto& [start, range] : ranges_)
    if (range.owner.component == component) total += range.bytes;
  return total;
}

HostPageLocks& host_page_locks() {
  static HostPageLocks locks;
  return locks;
}

int64_t host_page_bytes() {
  static const int64_t bytes = std::max<long>(::sysconf(_SC_PAGESIZE), 4096);
  return bytes;
}

}  // namespace canvas
