// How a caller wants jobs to plan their memory: the planner's strategy, quality and parallelism, budgets
// that replace the measured free memory, and further devices.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "planning/planner.h"

namespace canvas {

// How a job's LoRAs meet the weights (models/lora.h). Auto merges them into the weights a placement holds
// whole in lossless storage and computes them beside the rest (streamed, quantized or mapped weights);
// RunTime computes them all beside the weights.
enum class LoraApply { Auto, RunTime };
std::string_view lora_apply_name(LoraApply apply);  // "auto", "runtime"
// Throws canvas::Error listing the choices.
LoraApply parse_lora_apply(std::string_view name);

struct MemoryOptions {
  PlanRequest plan;
  std::optional<int64_t> device_budget_bytes;  // replaces the measured free memory of each device
  std::optional<int64_t> host_budget_bytes;    // replaces the measured available host memory
  // Bytes of the checkpoint's pages streamed weights may lock in place (--pin-budget; 0 turns it off);
  // unset, what leaves a quarter of the host's memory available.
  std::optional<int64_t> page_lock_budget_bytes;
  // Devices beside the model's own that plans may spread over (--devices); all of the same type.
  std::vector<Device> extra_devices;
  LoraApply lora_apply = LoraApply::Auto;
};

}  // namespace canvas
