#include "pipeline/model_placement.h"

namespace canvas {

namespace {

// The blocks [first, first + count) of `weights` (with its once-read parts), and its weights outside the
// blocks only when `with_shared`.
ComponentWeights share_of(const ComponentWeights& weights, int first, int count, bool with_shared) {
  ComponentWeights share{weights.component, {}, {}, {}};
  share.shared = with_shared ? weights.shared : WeightGroup{weights.shared.owner, {}, {}};
  share.blocks.assign(weights.blocks.begin() + first, weights.blocks.begin() + first + count);
  if (!weights.once_blocks.empty())
    share.once_blocks.assign(weights.once_blocks.begin() + first,
                             weights.once_blocks.begin() + first + count);
  return share;
}

// The whole component on `device`, as a plan without shares describes it.
DeviceShare whole(Device device, const ComponentPlan& plan, int blocks) {
  DeviceShare share;
  share.device = device;
  share.blocks = blocks;
  share.resident_blocks = plan.residency == Residency::Mapped ? blocks : plan.resident_blocks;
  share.streamed_blocks = plan.residency == Residency::Mapped ? 0 : plan.streamed_blocks;
  share.slots = plan.slots;
  share.page_locked_bytes = plan.residency == Residency::Mapped ? 0 : plan.page_locked_bytes;
  return share;
}

}  // namespace

ComponentPlacement::ComponentPlacement(Device device, ComponentWeights weights, const ComponentPlan& plan,
                                       int64_t placing_lock_budget)
    : plan_(plan), placing_lock_budget_(placing_lock_budget) {
  check(!is_replicated(plan.spread), "a replicated (sequence or CFG parallel) plan for " +
                                         component_label(weights.component) +
                                         " needs one replica of its weights per device");
  const int blocks = static_cast<int>(weights.blocks.size());
  if (plan.spread == Spread::One || plan.residency == Residency::Mapped) {
    // The plan's own counts, which a recovery may have narrowed since the share was planned.
    add_share(weights, whole(plan.device_or(device), plan, blocks));
    return;
  }
  int covered = 0;
  for (const DeviceShare& share : plan.shares) {
    check(share.first_block == covered && share.blocks >= 0 && covered + share.blocks <= blocks,
          "the memory plan for " + component_label(weights.component) + " does not match its " +
              std::to_string(blocks) + " blocks");
    add_share(weights, share);
    covered += share.blocks;
  }
  check(covered == blocks, "the memory plan for " + component_label(weights.component) +
                               " does not match its " + std::to_string(blocks) + " blocks");
}

ComponentPlacement::ComponentPlacement(Device device, std::vector<ComponentWeights> replicas,
                                       const ComponentPlan& plan, int64_t placing_lock_budget)
    : plan_(plan), placing_lock_budget_(placing_lock_budget) {
  check(is_replicated(plan.spread) && replicas.size() == plan.shares.size() && !replicas.empty(),
        "a replicated placement needs one replica of the weights per device of its plan");
  // Every device holds the arrangement the plan's counts give (a recovery may have narrowed them).
  for (size_t i = 0; i < replicas.size(); ++i) {
    const int blocks = static_cast<int>(replicas[i].blocks.size());
    add_share(replicas[i], whole(plan.shares[i].device, plan, blocks));
  }
}

void ComponentPlacement::add_share(const ComponentWeights& weights, const DeviceShare& share) {
  shares_.push_back(std::make_unique<DevicePlacement>(
      plan_.residency, share_of(weights, share.first_block, share.blocks, share.holds_shared), share,
      placing_lock_budget_));
  devices_.push_back(share.device);
  first_block_.push_back(share.first_block);
}

void ComponentPlacement::begin_phase(bool once_read_done) {
  for (auto& share : shares_) share->begin_phase(once_read_done);
  in_phase_ = true;
}

void ComponentPlacement::end_phase() {
  in_phase_ = false;
  for (auto& share : shares_) share->end_phase();
}

void ComponentPlacement::set_profiler(Profiler* profiler) {
  for (auto& share : shares_) share->set_profiler(profiler);
}

template <typename Gate>
void ComponentPlacement::gate(int index, Gate&& call) {
  if (is_replicated(plan_.spread)) {
    for (auto& share : shares_) call(*share, index);
    return;
  }
  size_t share = shares_.size() - 1;
  while (share > 0 && index < first_block_[share]) --share;
  call(*shares_[share], index - first_block_[share]);
}

void ComponentPlacement::before_block(int index) {
  gate(index, [](DevicePlacement& share, int local) { share.before_block(local); });
}
void ComponentPlacement::after_block(int index) {
  gate(index, [](DevicePlacement& share, int local) { share.after_block(local); });
}
void ComponentPlacement::before_once(int index) {
  gate(index, [](DevicePlacement& share, int local) { share.before_once(local); });
}
void ComponentPlacement::after_once(int index) {
  gate(index, [](DevicePlacement& share, int local) { share.after_once(local); });
}

int64_t ComponentPlacement::bytes_streamed() const {
  int64_t total = 0;
  for (const auto& share : shares_) total += share->bytes_streamed();
  return total;
}

int64_t ComponentPlacement::page_locked_bytes() const {
  int64_t total = 0;
  for (const auto& share : shares_) total += share->page_locked_bytes();
  return total;
}

Device ComponentPlacement::device_of_block(int index) const {
  if (is_replicated(plan_.spread)) return devices_.front();
  size_t share = devices_.size() - 1;
  while (share > 0 && index < first_block_[share]) --share;
  return devices_[share];
}

}  // namespace canvas
