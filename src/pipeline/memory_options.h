// How a caller wants jobs to plan their memory: the planner's strategy, quality and parallelism, budgets
// that replace the measured free memory, and further devices.
#pragma once

#include <optional>
#include <vector>

#include "planning/planner.h"

namespace canvas {

struct MemoryOptions {
  PlanRequest plan;
  std::optional<int64_t> device_budget_bytes;  // replaces the measured free memory of each device
  std::optional<int64_t> host_budget_bytes;    // replaces the measured available host memory
  // Devices beside the model's own that plans may spread over (--devices); all of the same type.
  std::vector<Device> extra_devices;
};

}  // namespace canvas
