// Allocation failures on demand, to test that every allocation site fails cleanly and that jobs recover.
// CANVAS_FAIL_ALLOC=N fails the Nth allocation of the process (counting from 1, over every allocator but
// the meta device's, whose dry runs hold no memory), and N,M,... each of those;
// CANVAS_FAIL_ALLOC=random:SEED:P fails each allocation with probability P, the same ones for the same
// seed. Unset, it costs one relaxed atomic increment per allocation.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace canvas {

class FaultInjector {
 public:
  // Reads CANVAS_FAIL_ALLOC on first use; throws canvas::Error on a malformed value.
  static FaultInjector& instance();

  // Replaces the configuration and restarts the count: "" disables, else the forms above.
  void configure(std::string_view spec);
  // Counts one allocation; true when it should fail.
  bool should_fail();
  int64_t allocations_seen() const { return seen_.load(std::memory_order_relaxed); }
  const std::string& spec() const { return spec_; }

 private:
  FaultInjector();

  std::string spec_;
  std::atomic<int64_t> seen_{0};
  std::vector<int64_t> fail_at_;  // sorted; empty: no fixed indices
  uint64_t seed_ = 0;
  double probability_ = 0.0;  // 0: no random failures
};

}  // namespace canvas
