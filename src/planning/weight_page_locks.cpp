#include "planning/weight_page_locks.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>

#include "util/format.h"

// Linux 5.14's prefault of a mapping's pages for reading; older headers lack the name, older kernels
// refuse it (then locking faults the pages in itself).
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace canvas {

namespace {

// Large enough that a call's overhead is nothing beside its bytes, small enough that locking stops
// promptly and the first blocks are ready early.
constexpr int64_t kChunkBytes = int64_t{256} << 20;

struct ByteRange {
  uintptr_t begin, end;
};

}  // namespace

std::vector<PageSpan> page_spans(const std::vector<WeightGroup>& groups, int64_t budget, int64_t page_bytes,
                                 int64_t chunk_bytes) {
  check(page_bytes > 0 && chunk_bytes >= page_bytes, "page_spans: chunks must hold at least a page");
  std::vector<ByteRange> ranges;
  int64_t taken = 0;
  for (const WeightGroup& group : groups) {
    if (taken + group.bytes() > budget) break;
    taken += group.bytes();
    for (const Tensor* tensor : group.tensors) {
      if (!tensor->defined() || tensor->buffer()->writable() || !tensor->device().is_cpu()) continue;
      const auto begin = reinterpret_cast<uintptr_t>(tensor->raw_data());
      ranges.push_back({begin, begin + static_cast<uintptr_t>(tensor->nbytes())});
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  std::vector<ByteRange> merged;
  for (const ByteRange& range : ranges) {
    if (!merged.empty() && range.begin <= merged.back().end)
      merged.back().end = std::max(merged.back().end, range.end);
    else
      merged.push_back(range);
  }
  const auto page = static_cast<uintptr_t>(page_bytes);
  const auto chunk = static_cast<uintptr_t>(chunk_bytes / page_bytes * page_bytes);
  std::vector<PageSpan> spans;
  for (const ByteRange& range : merged) {
    const uintptr_t first = (range.begin + page - 1) / page * page, last = range.end / page * page;
    for (uintptr_t at = first; at < last; at += chunk) {
      spans.push_back(
          {reinterpret_cast<const std::byte*>(at), static_cast<int64_t>(std::min(chunk, last - at))});
    }
  }
  return spans;
}

WeightPageLocks::WeightPageLocks(const std::vector<WeightGroup>& groups, int64_t budget, MemoryOwner owner,
                                 HostPageLocks& locks)
    : locks_(locks), owner_(std::move(owner)) {
  spans_ = page_spans(groups, budget, host_page_bytes(), kChunkBytes);
  for (const PageSpan& span : spans_) target_bytes_ += span.bytes;
  for (const WeightGroup& group : groups)
    for (const Tensor* tensor : group.tensors)
      if (tensor->defined()) buffers_.push_back(tensor->buffer());
  if (!spans_.empty()) thread_ = std::thread([this] { run(); });
}

WeightPageLocks::~WeightPageLocks() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto span = locked_.rbegin(); span != locked_.rend(); ++span) locks_.unlock(*span);
}

void WeightPageLocks::run() {
  for (const PageSpan& span : spans_) {
    if (stopping_) return;
    // Pages another placement of the same weights has locked (a parked arrangement's) serve this one too.
    const std::vector<HostRun> runs = locks_.runs(span.begin, span.bytes);
    if (runs.size() != 1 || runs.front().locked) continue;
    try {
      // Faulting the pages in first keeps the lock call itself short; a cold span is read from disk here.
      (void)::madvise(const_cast<std::byte*>(span.begin), static_cast<size_t>(span.bytes),
                      MADV_POPULATE_READ);
      locks_.lock(span.begin, span.bytes, owner_);
    } catch (const Error& error) {
      failure_ = std::string(error.what()) + " (after " + format_bytes(locked_bytes_.load()) +
                 " locked; the rest is staged)";
      return;
    }
    locked_.push_back(span.begin);
    locked_bytes_ += span.bytes;
  }
}

std::optional<std::string> WeightPageLocks::wait() {
  std::lock_guard lock(wait_mutex_);
  if (thread_.joinable()) thread_.join();
  return failure_;
}

}  // namespace canvas
