// A component's share of one device arranged as its memory plan says: during its phase the share's
// shared weights and resident blocks are on the device and the rest stream through a ring; between
// phases an offloaded share gives its device memory back. ComponentPlacement (model_placement.h) puts
// the shares of a component together.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/nn.h"
#include "planning/planner.h"
#include "planning/weight_page_locks.h"
#include "planning/weight_streamer.h"
#include "profile/profiler.h"

namespace canvas {

// A component's weights split the way its executor reads them.
struct ComponentWeights {
  Component component = Component::Transformer;
  WeightGroup shared;                    // outside the blocks
  std::vector<WeightGroup> blocks;       // read by every pass
  std::vector<WeightGroup> once_blocks;  // read once per job, before the passes (may be empty)
};

class DevicePlacement : public nn::BlockGate {
 public:
  // `share` gives the device, the resident and streamed blocks and the slots; `weights` holds the share's
  // blocks only, numbered from 0. `residency` is the component's. Placing the weights may lock up to
  // `placing_lock_budget` bytes of their pages while it copies them (group_placement.h).
  DevicePlacement(Residency residency, ComponentWeights weights, const DeviceShare& share,
                  int64_t placing_lock_budget);
  ~DevicePlacement() override;

  // Puts the shared weights and resident blocks on the device and starts streaming the first blocks.
  // `once_read_done`: the job has already read the once-read weights (a placement replacing another
  // mid-phase), so they are not streamed again. Within a phase a second call does nothing; a call that
  // throws leaves nothing placed.
  void begin_phase(bool once_read_done = false);
  // An offloaded component gives its device memory back; a resident one keeps it for the next job.
  void end_phase();
  // Records each block's compute from here on as a "compute" interval, and each upload of the streams
  // begun after this call (so before begin_phase) as a "copy" interval; null records nothing.
  void set_profiler(Profiler* profiler);

  // Around each block of a pass (nn::BlockGate).
  void before_block(int index) override;
  void after_block(int index) override;
  // Around each block's once-read weights, in block order, once per job.
  void before_once(int index);
  void after_once(int index);

  bool in_phase() const { return in_phase_; }
  // Weight bytes copied to the device since the current (or last) phase began.
  int64_t bytes_streamed() const;
  // Bytes of the streamed blocks' pages locked in place so far.
  int64_t page_locked_bytes() const { return page_locks_ ? page_locks_->locked_bytes() : 0; }

 private:
  void place(bool once_read_done);
  void start_pass_stream();
  int64_t streamed_since_placed() const;
  // Before a block's compute is queued, after its weights were waited for; and after it.
  void start_compute();
  void record_compute(const WeightGroup& block);

  Device device_;
  ComponentWeights weights_;
  Residency residency_;
  DeviceShare share_;
  int64_t placing_lock_budget_;
  std::vector<bool> block_resident_;
  std::vector<int> stream_index_;  // each block's group in the pass stream, -1 when resident
  int streamed_count_ = 0;
  std::vector<PlacedGroup> placed_;
  // Locked from the placement's start, while earlier phases run; unlocked after the streams have gone.
  std::unique_ptr<WeightPageLocks> page_locks_;
  std::unique_ptr<WeightStreamer> pass_stream_;
  std::unique_ptr<WeightStreamer> once_stream_;
  int64_t bytes_streamed_before_ = 0;  // by streams already closed
  int64_t phase_start_bytes_ = 0;
  Profiler* profiler_ = nullptr;
  Backend* backend_ = nullptr;  // for the compute timestamps, when profiled
  Timestamp compute_start_;
  bool in_phase_ = false;
};

}  // namespace canvas
