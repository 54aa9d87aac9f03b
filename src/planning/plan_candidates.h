// The arrangements a plan is chosen among: for each component its residency, weight precision, resident
// blocks and device or spread, as each strategy and parallelism allows. planning/planner.cpp sizes and times
// them; this header is that file's, not the planner's interface.
#pragma once

#include <limits>
#include <vector>

#include "planning/planner.h"

namespace canvas::planning {

constexpr int kAllBlocks = std::numeric_limits<int>::max();
constexpr int kAsManyAsFit = -1;

// How a component's weights are laid out during its phase.
struct Layout {
  Layout(Residency residency_, WeightPrecision precision_, int resident_blocks_)
      : residency(residency_), precision(precision_), resident_blocks(resident_blocks_) {}
  Residency residency;
  WeightPrecision precision;
  int resident_blocks;  // kAsManyAsFit, kAllBlocks or a count (for Spread::Pipeline, over all shares)
  int pool = 0;         // Spread::One: the device it runs on
  Spread spread = Spread::One;
  // Spread::Pipeline as planned before (evaluate_plan): each share's blocks and resident blocks; empty
  // to split anew.
  std::vector<int> share_blocks;
  std::vector<int> share_resident;
};

// The residencies and precisions a strategy allows (auto: every combination worth comparing), each
// component on the primary device.
std::vector<std::vector<Layout>> strategy_layouts(const std::vector<ComponentFacts>& components,
                                                  const MachineFacts& machine, Strategy strategy,
                                                  Quality quality);

// Every way of putting `base`'s components on `pools` devices that `parallelism` allows, the first device
// alone first (so a tie never spreads for nothing).
std::vector<std::vector<Layout>> device_layouts(const std::vector<ComponentFacts>& components,
                                                const std::vector<Layout>& base, int pools,
                                                Parallelism parallelism);

}  // namespace canvas::planning
