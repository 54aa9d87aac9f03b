#include "pipeline/device_placement.h"

#include <algorithm>

#include "planning/group_placement.h"

namespace canvas {

namespace {

// Pinned staging for streamed weights (the only pinned memory a plan uses): room for two groups, so the host
// copies the next group while the one before waits for its slot, within a cap on page-locked memory.
int64_t staging_bytes(const std::vector<WeightGroup>& groups) {
  constexpr int64_t kCap = int64_t{2} << 30;
  int64_t largest = 0;
  for (const WeightGroup& group : groups) largest = std::max(largest, group.bytes());
  return std::min(2 * largest, kCap);
}

}  // namespace

DevicePlacement::DevicePlacement(Residency residency, ComponentWeights weights, const DeviceShare& share,
                                 int64_t placing_lock_budget)
    : device_(share.device),
      weights_(std::move(weights)),
      residency_(residency),
      share_(share),
      placing_lock_budget_(placing_lock_budget) {
  check(share_.resident_blocks + share_.streamed_blocks == static_cast<int>(weights_.blocks.size()) ||
            residency_ == Residency::Mapped,
        "the memory plan for " + component_label(weights_.component) + " does not match its " +
            std::to_string(weights_.blocks.size()) + " blocks");
  const int blocks = static_cast<int>(weights_.blocks.size());
  for (int i = 0; i < blocks; ++i) {
    const bool resident =
        residency_ == Residency::Mapped || block_is_resident(i, blocks, share_.resident_blocks);
    block_resident_.push_back(resident);
    stream_index_.push_back(resident ? -1 : streamed_count_++);
  }
  if (share_.page_locked_bytes > 0) {
    std::vector<WeightGroup> streamed;
    for (int i = 0; i < blocks; ++i)
      if (!block_resident_[i]) streamed.push_back(weights_.blocks[i]);
    page_locks_ = std::make_unique<WeightPageLocks>(
        streamed, share_.page_locked_bytes,
        MemoryOwner{component_label(weights_.component), -1, MemoryRole::Weights});
  }
}

DevicePlacement::~DevicePlacement() {
  // The streams wait for their copies as they go, so no copy reads a locked page once they have.
  once_stream_.reset();
  pass_stream_.reset();
  placed_.clear();
  page_locks_.reset();
}

void DevicePlacement::begin_phase(bool once_read_done) {
  if (in_phase_) return;
  phase_start_bytes_ = streamed_since_placed();
  if (residency_ != Residency::Mapped && placed_.empty()) {
    try {
      place(once_read_done);
    } catch (...) {
      // Nothing half-placed stays behind: a retry begins the phase from scratch.
      once_stream_.reset();
      pass_stream_.reset();
      placed_.clear();
      throw;
    }
  }
  in_phase_ = true;
}

void DevicePlacement::place(bool once_read_done) {
  const int blocks = static_cast<int>(weights_.blocks.size());
  const bool all_resident = share_.resident_blocks == blocks;
  placed_.emplace_back(weights_.shared);
  for (int i = 0; i < blocks; ++i)
    if (block_resident_[i]) placed_.emplace_back(weights_.blocks[i]);
  if (all_resident) {
    for (const WeightGroup& group : weights_.once_blocks) placed_.emplace_back(group);
  }
  place_groups(placed_, device_, placing_lock_budget_);

  if (all_resident) return;
  // The once-read weights go first and their ring is freed before the passes' ring is made, so the
  // phase never holds both.
  if (!weights_.once_blocks.empty() && !once_read_done) {
    once_stream_ = std::make_unique<WeightStreamer>(device_, weights_.once_blocks, share_.slots,
                                                    /*cyclic=*/false, component_label(weights_.component),
                                                    staging_bytes(weights_.once_blocks), profiler_);
  } else {
    start_pass_stream();
  }
}

void DevicePlacement::start_pass_stream() {
  std::vector<WeightGroup> streamed;
  for (size_t i = 0; i < weights_.blocks.size(); ++i)
    if (!block_resident_[i]) streamed.push_back(weights_.blocks[i]);
  const int64_t staging = staging_bytes(streamed);
  pass_stream_ = std::make_unique<WeightStreamer>(device_, std::move(streamed), share_.slots, /*cyclic=*/true,
                                                  component_label(weights_.component), staging, profiler_);
}

void DevicePlacement::end_phase() {
  in_phase_ = false;
  if (residency_ == Residency::Resident) return;
  bytes_streamed_before_ = streamed_since_placed();
  once_stream_.reset();
  pass_stream_.reset();
  placed_.clear();
}

void DevicePlacement::set_profiler(Profiler* profiler) {
  profiler_ = profiler;
  backend_ = profiler ? &backend_for(device_) : nullptr;
  compute_start_.reset();
}

void DevicePlacement::start_compute() {
  if (profiler_) compute_start_ = backend_->compute_timestamp();
}

void DevicePlacement::record_compute(const WeightGroup& block) {
  if (!compute_start_) return;
  profiler_->record_interval("compute", block.label(), std::move(compute_start_),
                             backend_->compute_timestamp());
}

void DevicePlacement::before_block(int index) {
  if (pass_stream_ && stream_index_[index] >= 0)
    pass_stream_->acquire(static_cast<size_t>(stream_index_[index]));
  start_compute();
}

void DevicePlacement::after_block(int index) {
  record_compute(weights_.blocks[index]);
  if (pass_stream_ && stream_index_[index] >= 0)
    pass_stream_->release(static_cast<size_t>(stream_index_[index]));
}

void DevicePlacement::before_once(int index) {
  if (once_stream_) once_stream_->acquire(index);
  start_compute();
}

void DevicePlacement::after_once(int index) {
  record_compute(weights_.once_blocks[index]);
  if (!once_stream_) return;
  once_stream_->release(index);
  // The once-read weights are done for the job: their ring goes back before the passes begin.
  if (index + 1 == static_cast<int>(once_stream_->size())) {
    bytes_streamed_before_ += once_stream_->bytes_uploaded();
    once_stream_.reset();
    start_pass_stream();
  }
}

int64_t DevicePlacement::bytes_streamed() const {
  return streamed_since_placed() - phase_start_bytes_;
}

int64_t DevicePlacement::streamed_since_placed() const {
  int64_t total = bytes_streamed_before_;
  if (pass_stream_) total += pass_stream_->bytes_uploaded();
  if (once_stream_) total += once_stream_->bytes_uploaded();
  return total;
}

}  // namespace canvas
