// A loaded model's weights arranged as its memory plan says, on one device or several: each of the
// component's shares (planning/planner.h DeviceShare) is a DevicePlacement, and the blocks of a pass are
// gated on the share that holds them. Sequence and CFG parallelism give every device a replica of the
// weights of its own, and every block is gated on all of them.
#pragma once

#include <memory>
#include <vector>

#include "pipeline/device_placement.h"

namespace canvas {

class ComponentPlacement : public nn::BlockGate {
 public:
  // `device` is where a plan without shares (made by hand, or mapped off the host) puts the component.
  // Placing it may lock up to `placing_lock_budget` bytes of its pages while it copies them.
  ComponentPlacement(Device device, ComponentWeights weights, const ComponentPlan& plan,
                     int64_t placing_lock_budget = 0);
  // A replicated spread (sequence or guidance parallel): one set of weights per share, each device's own.
  ComponentPlacement(Device device, std::vector<ComponentWeights> replicas, const ComponentPlan& plan,
                     int64_t placing_lock_budget = 0);

  // Places every share (see DevicePlacement::begin_phase). A share that throws leaves nothing of itself
  // placed; the shares before it stay as they are until end_phase or destruction.
  void begin_phase(bool once_read_done = false);
  void end_phase();
  void set_profiler(Profiler* profiler);

  void before_block(int index) override;
  void after_block(int index) override;
  void before_once(int index);
  void after_once(int index);

  bool in_phase() const { return in_phase_; }
  const ComponentPlan& plan() const { return plan_; }
  int64_t bytes_streamed() const;
  // Bytes of the streamed blocks' pages locked in place so far, over the shares.
  int64_t page_locked_bytes() const;
  // Where the component's weights outside the blocks are, and where it starts computing.
  Device device() const { return devices_.front(); }
  // Where block `index` computes (for a replicated component, on every device: the first is given).
  Device device_of_block(int index) const;
  // Each share's device, in share order.
  const std::vector<Device>& devices() const { return devices_; }

 private:
  void add_share(const ComponentWeights& weights, const DeviceShare& share);
  // The share holding block `index` and the block's index within it; every share when replicated.
  template <typename Gate>
  void gate(int index, Gate&& call);

  ComponentPlan plan_;
  int64_t placing_lock_budget_;
  std::vector<std::unique_ptr<DevicePlacement>> shares_;
  std::vector<Device> devices_;
  std::vector<int> first_block_;
  bool in_phase_ = false;
};

}  // namespace canvas
