// The cache the CUDA backend keeps of its plans (cuDNN graphs and algorithms, cuBLASLt descriptors and
// heuristic choices), one per distinct problem shape, so a steady-state step builds none. It is bounded:
// a long-running process sees many shapes (text lengths, image sizes), so past its capacity the least
// recently used plan is evicted and rebuilt if its shape comes back. Plain C++, no CUDA: the GPU-free
// test suite checks it.
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "util/error.h"

namespace canvas::cuda {

// Plans are handed out as shared_ptr: one evicted while a caller still runs it lives until that caller
// is done. Thread-safe; a plan is built under the cache's lock, so each shape is built once.
template <typename Key, typename Plan>
class PlanCache {
 public:
  explicit PlanCache(size_t capacity) : capacity_(capacity) {
    check(capacity > 0, "a plan cache needs room for at least one plan");
  }
  PlanCache(const PlanCache&) = delete;
  PlanCache& operator=(const PlanCache&) = delete;

  // The plan for `key`, built by `build()` (which returns a std::shared_ptr<Plan>) when there is none.
  // Nothing is cached when `build` throws.
  template <typename Build>
  std::shared_ptr<Plan> find_or_build(const Key& key, Build&& build) {
    std::lock_guard lock(mutex_);
    if (auto found = index_.find(key); found != index_.end()) {
      mark_used(found->second);
      return found->second->second;
    }
    std::shared_ptr<Plan> plan = build();
    insert(key, plan);
    return plan;
  }

  // Puts `plan` in place of the one for `key`, e.g. one recording that the shape cannot run after a
  // launch was refused, so later calls go straight to the fallback.
  void replace(const Key& key, std::shared_ptr<Plan> plan) {
    std::lock_guard lock(mutex_);
    if (auto found = index_.find(key); found != index_.end()) {
      found->second->second = std::move(plan);
      mark_used(found->second);
      return;
    }
    insert(key, std::move(plan));
  }

 private:
  using Entry = std::pair<Key, std::shared_ptr<Plan>>;
  using Entries = std::list<Entry>;

  void mark_used(typename Entries::iterator entry) { entries_.splice(entries_.begin(), entries_, entry); }

  void insert(const Key& key, std::shared_ptr<Plan> plan) {
    entries_.emplace_front(key, std::move(plan));
    index_.emplace(key, entries_.begin());
    if (entries_.size() > capacity_) {
      index_.erase(entries_.back().first);
      entries_.pop_back();
    }
  }

  const size_t capacity_;
  std::mutex mutex_;
  Entries entries_;  // the most recently used first
  std::map<Key, typename Entries::iterator> index_;
};

}  // namespace canvas::cuda
