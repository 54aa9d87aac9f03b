// The memory planner: from exact weight sizes, the job's measured activation peaks and the machine's
// measured memory and speeds, it decides for each component where its weights live while the job runs,
// and in what precision, and predicts the peak and the time per step of that plan.
//
// Components run in phases (text encoder, transformer, VAE). A component is either resident for the
// whole job or offloaded: on the device only during its own phase. Within its phase, a component's
// first blocks can be placed and the rest streamed through a ring of device slots, copies overlapping
// compute. On a host-only device weights can also stay mapped from the checkpoint, costing nothing.
//
// With several devices (--devices) each is a memory pool of its own: a component can run on any of them,
// the transformer's blocks can be split across them (a pipeline: activations pass device to device), or
// every device can hold the transformer and take a share of the tokens (sequence parallel: attention
// heads exchanged all-to-all), or, with guidance, one of the guidance halves (CFG parallel).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memory/device.h"
#include "planning/component.h"
#include "planning/machine_profile.h"

namespace canvas {

enum class Strategy { Auto, Bf16Full, Fp8, Nf4, ModelOffload, SequentialOffload };
// The lowest weight precision a plan may use.
enum class Quality { Lossless, Fp8, FourBit };
enum class Residency { Mapped, Resident, Offloaded };
// Lossless is the precision the device computes with (the checkpoint's on the CPU, the activation
// dtype's on a GPU); the others are the quantized storages of tensor/quantize.h.
enum class WeightPrecision { Lossless, Fp8, Nf4 };
inline constexpr int kWeightPrecisions = 3;
// Which ways of using several devices a plan may take: none (the first device only), whole components on
// different devices, the transformer's blocks split across devices, its tokens split across them, or its
// guidance halves run one per device.
enum class Parallelism { Auto, None, Components, Pipeline, Sequence, Guidance };
// How one component uses the devices: on one, its blocks split across several, or on each of several (a
// replica of its weights on each) with a share of the tokens or one of the guidance halves.
enum class Spread { One, Pipeline, Sequence, Guidance };
// Whether every device of the spread holds all of the component's blocks.
inline bool is_replicated(Spread spread) {
  return spread == Spread::Sequence || spread == Spread::Guidance;
}

std::string_view strategy_name(Strategy strategy);
std::string_view quality_name(Quality quality);
std::string_view residency_name(Residency residency);
std::string_view precision_name(WeightPrecision precision);
std::string_view parallelism_name(Parallelism parallelism);
std::string_view spread_name(Spread spread);
// Throws canvas::Error listing the valid names.
Strategy parse_strategy(std::string_view name);
Quality parse_quality(std::string_view name);
Parallelism parse_parallelism(std::string_view name);

// A block's weights by precision (index WeightPrecision); zero where the precision does not apply.
struct BlockFacts {
  int64_t bytes[kWeightPrecisions] = {};       // read by every pass
  int64_t once_bytes[kWeightPrecisions] = {};  // read once per job (the transformer's adaLN weights)
};

struct ComponentFacts {
  Component component = Component::Transformer;
  int64_t shared_bytes = 0;  // weights outside the blocks, always placed during the phase
  std::vector<BlockFacts> blocks;
  bool quantizable = false;  // whether Fp8 / Nf4 apply to the blocks
  // Host memory the arrangement's own copies of the weights take (converted to the placed dtype, or
  // quantized), by the blocks' precision; weights used as mapped from the checkpoint cost nothing.
  int64_t host_copy_bytes[kWeightPrecisions] = {};
  int64_t activation_bytes = 0;          // the phase's activation peak, measured by a dry run
  int64_t job_cache_bytes = 0;           // what the phase keeps for the whole job (precomputed modulation)
  double flops_per_pass = 0;             // multiply-adds x 2 of one pass
  double attention_scores_per_pass = 0;  // query-key pairs over every head and block of one pass
  int passes = 1;                        // passes in the job (prompts, steps x guidance halves, images)
  // Passes that read the blocks' weights once between them (the guidance halves of one step).
  int passes_per_weight_read = 1;
  // Spreading over several devices. boundary_bytes is the hidden state one pass hands from a block to the
  // next (what a pipeline split sends between devices, and what each attention exchange moves).
  bool pipeline_splittable = false;
  int attention_heads = 0;  // heads a sequence-parallel split shares out; 0 when it cannot run so
  int64_t boundary_bytes = 0;
  // Each device's activation peak when the tokens are split across `sequence_devices` devices, measured by a
  // dry run of the split forward; 0 when not measured.
  int64_t sequence_activation_bytes = 0;
  int sequence_devices = 0;
  // Each device's activation peak when each runs one of the passes sharing a weight read (a guidance half),
  // measured by a dry run of one; 0 when not measured.
  int64_t guidance_activation_bytes = 0;

  int64_t block_bytes(WeightPrecision precision) const;
};

// A device a plan may use, and the bytes it may take there.
struct DevicePool {
  Device device;
  int64_t budget = 0;
};

struct MachineFacts {
  Device device;                        // the primary device: the latents and the scheduler live there
  int64_t device_budget = 0;            // bytes the plan may use on it
  std::vector<DevicePool> extra_pools;  // further devices the plan may spread over (--devices)
  int64_t host_budget = 0;              // bytes of host RAM the plan may pin or copy into
  // Bytes of the mapped checkpoint whose pages streamed weights may have locked in place (0 when the
  // device cannot read such pages or locking is off).
  int64_t page_lock_budget = 0;
  bool device_is_host = false;
  MachineProfile profile;               // of the primary device; the others are taken to be alike
  double interconnect_bytes_per_s = 0;  // device-to-device copies between pools, measured
  std::string exchange;                 // what carries a sequence-parallel exchange ("nccl 2.28.9")

  // The primary device's pool first.
  std::vector<DevicePool> pools() const;
};

struct PlanRequest {
  Strategy strategy = Strategy::Auto;
  Quality quality = Quality::Lossless;
  Parallelism parallelism = Parallelism::Auto;
};

// Whether block `index` of `blocks` stays on the device when `resident` of them do. The streamed ones
// are spread evenly between the resident ones, so each streamed block's copy runs while resident
// blocks compute instead of queueing behind the copy before it.
bool block_is_resident(int index, int blocks, int resident);

// A component's part on one device: blocks [first_block, first_block + blocks), of which resident_blocks
// stay there (block_is_resident within the share) and the rest stream.
struct DeviceShare {
  Device device;
  int pool = 0;  // index into MachineFacts::pools()
  int first_block = 0;
  int blocks = 0;
  int resident_blocks = 0;
  int streamed_blocks = 0;
  int slots = 0;
  bool holds_shared = true;  // the weights outside the blocks (embedders, final layers)
  int64_t placed_bytes = 0;
  int64_t phase_peak_bytes = 0;   // on this device, this phase's own (other components' not counted)
  int64_t page_locked_bytes = 0;  // of the streamed blocks, read from pages locked in place
};

struct ComponentPlan {
  Component component = Component::Transformer;
  Residency residency = Residency::Offloaded;
  WeightPrecision precision = WeightPrecision::Lossless;
  // Totals over the shares (replicated, each device's: they hold the same arrangement).
  int resident_blocks = 0;  // which ones: block_is_resident; the others stream
  int streamed_blocks = 0;
  int slots = 0;                  // device slots of the stream ring
  int64_t placed_bytes = 0;       // weights on the device during the phase, ring included
  int64_t phase_peak_bytes = 0;   // everything on the fullest device at the phase's worst point
  int64_t page_locked_bytes = 0;  // streamed weights read from pages locked in place
  double predicted_pass_s = 0;    // one pass (one step for the transformer)
  double predicted_phase_s = 0;   // all passes plus placing the weights
  Spread spread = Spread::One;
  std::vector<DeviceShare> shares;  // in block order; one unless spread

  // Where the component runs (its first share); `fallback` when it has none (a CPU-mapped component).
  Device device_or(Device fallback) const { return shares.empty() ? fallback : shares.front().device; }
};

// What a plan puts on each device at its fullest.
struct PoolUse {
  Device device;
  int64_t budget = 0;
  int64_t predicted_peak_bytes = 0;
};

struct MemoryPlan {
  Strategy strategy = Strategy::Auto;
  Strategy chosen = Strategy::Auto;  // the preset an auto plan matches, or Auto for a mixed plan
  Quality quality = Quality::Lossless;
  Parallelism parallelism = Parallelism::Auto;
  Device device;
  int64_t device_budget = 0;
  int64_t host_budget = 0;
  std::vector<ComponentPlan> components;  // in phase order
  std::vector<PoolUse> pools;             // the primary device first
  std::string exchange;                   // what carries a sequence-parallel exchange
  int64_t predicted_peak_bytes = 0;       // on the fullest device
  int64_t host_copy_bytes = 0;            // host memory taken by the weights' converted and quantized copies
  int64_t page_lock_budget = 0;           // MachineFacts::page_lock_budget
  double predicted_total_s = 0;

  // Throws canvas::Error when the plan has no such component.
  const ComponentPlan& component(Component component) const;
  ComponentPlan& component(Component component);
  // nullptr when the plan has no such component (a text-to-image job plans no vision encoder).
  const ComponentPlan* find(Component component) const;
  ComponentPlan* find(Component component);
  double predicted_step_s() const { return component(Component::Transformer).predicted_pass_s; }
  // One line per component, for the console and the image metadata.
  std::vector<std::string> describe() const;
  nlohmann::json to_json() const;
};

// The plan for `request` on this machine. Throws canvas::Error when the strategy cannot fit, naming
// the memory it needs and a strategy that would fit, if any.
MemoryPlan plan_memory(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                       const PlanRequest& request);

// The figures (bytes placed, peaks, predicted times) of `layout`'s arrangement (each component's
// residency, precision, devices and resident blocks), whatever the budget: for a plan a recovery narrowed.
MemoryPlan evaluate_plan(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                         const MemoryPlan& layout);

}  // namespace canvas
