// A loaded model's weights arranged as its memory plan says: during its phase a component's shared
// weights and first blocks are on the device and the rest stream through a ring; between phases an
// offloaded component gives its device memory back.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "memory/planner.h"
#include "memory/weight_streamer.h"
#include "models/nn.h"

namespace canvas {

// A component's weights split the way its executor reads them.
struct ComponentWeights {
  std::string name;
  WeightGroup shared;                    // outside the blocks
  std::vector<WeightGroup> blocks;       // read by every pass
  std::vector<WeightGroup> once_blocks;  // read once per job, before the passes (may be empty)
};

class ComponentPlacement : public nn::BlockGate {
 public:
  ComponentPlacement(Device device, ComponentWeights weights, const ComponentPlan& plan);
  ~ComponentPlacement() override;

  // Puts the shared weights and resident blocks on the device and starts streaming the first blocks.
  // `once_read_done`: the job has already read the once-read weights (a placement replacing another
  // mid-phase), so they are not streamed again.
  void begin_phase(bool once_read_done = false);
  // An offloaded component gives its device memory back; a resident one keeps it for the next job.
  void end_phase();

  // Around each block of a pass (nn::BlockGate).
  void before_block(int index) override;
  void after_block(int index) override;
  // Around each block's once-read weights, in block order, once per job.
  void before_once(int index);
  void after_once(int index);

  const ComponentPlan& plan() const { return plan_; }
  // Weight bytes copied to the device since the current (or last) phase began.
  int64_t bytes_streamed() const;

 private:
  void start_pass_stream();
  int64_t streamed_since_placed() const;
  // Copies the streamed blocks into pinned host memory, once: the device then reads them directly.
  void pin_streamed_blocks();

  Device device_;
  ComponentWeights weights_;
  ComponentPlan plan_;
  std::vector<bool> block_resident_;
  std::vector<int> stream_index_;  // each block's group in the pass stream, -1 when resident
  int streamed_count_ = 0;
  std::vector<PlacedGroup> placed_;
  std::unique_ptr<WeightStreamer> pass_stream_;
  std::unique_ptr<WeightStreamer> once_stream_;
  int64_t bytes_streamed_before_ = 0;  // by streams already closed
  int64_t phase_start_bytes_ = 0;
  bool pinned_ = false;
};

}  // namespace canvas
