#include "memory/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include "util/error.h"
#include "util/format.h"

namespace canvas {

namespace {

// Two slots let one block's copy run while the block before it computes; a third adds nothing when
// copies are slower than compute and only takes memory from resident blocks.
constexpr int kStreamSlots = 2;

template <typename Enum, size_t N>
Enum parse_name(std::string_view name, const std::pair<Enum, std::string_view> (&names)[N],
                const char* what) {
  std::string valid;
  for (const auto& [value, text] : names) {
    if (text == name) return value;
    valid += (valid.empty() ? "" : ", ") + std::string(text);
  }
  throw Error("unknown " + std::string(what) + " '" + std::string(name) + "': use " + valid);
}

constexpr std::pair<Strategy, std::string_view> kStrategyNames[] = {
    {Strategy::Auto, "auto"},
    {Strategy::Bf16Full, "bf16_full"},
    {Strategy::Fp8, "fp8"},
    {Strategy::Nf4, "nf4"},
    {Strategy::ModelOffload, "model_offload"},
    {Strategy::SequentialOffload, "sequential_offload"}};
constexpr std::pair<Quality, std::string_view> kQualityNames[] = {
    {Quality::Lossless, "lossless"}, {Quality::Fp8, "fp8"}, {Quality::FourBit, "4bit"}};

// How a component's weights are laid out during its phase.
struct Layout {
  Residency residency;
  WeightPrecision precision;
  int resident_blocks;  // -1: as many as fit
};

struct Rates {
  double compute_flops;  // per second
  double stream_bytes;   // streamed weights, per second
  double place_bytes;    // placing weights from the checkpoint, per second
  bool overlapped;       // copies run beside compute
};

Rates rates_for(const MachineFacts& machine) {
  const MachineProfile& p = machine.profile;
  Rates rates{};
  rates.compute_flops = std::max(p.gemm_flops_per_s, 1.0);
  if (machine.device_is_host) {
    rates.stream_bytes = rates.place_bytes = std::max(p.host_memcpy_bytes_per_s, 1.0);
    rates.overlapped = false;
  } else {
    // Streamed weights go from the mapped checkpoint through the upload queue's pinned staging ring:
    // pinned host memory is only ever that ring, never a copy of the model.
    rates.stream_bytes = std::max(p.host_to_device_staged_bytes_per_s, 1.0);
    rates.place_bytes = std::max(p.host_to_device_pageable_bytes_per_s, 1.0);
    rates.overlapped = true;
  }
  return rates;
}

int64_t once_bytes(const ComponentFacts& facts, WeightPrecision precision, int from_block) {
  int64_t total = 0;
  for (size_t i = static_cast<size_t>(from_block); i < facts.blocks.size(); ++i)
    total += facts.blocks[i].once_bytes[static_cast<int>(precision)];
  return total;
}

// The component's plan with `layout` given `available` device bytes for its phase, or nullopt when
// it cannot fit. `other_resident` is what other components keep on the device meanwhile.
std::optional<ComponentPlan> plan_component(const ComponentFacts& facts, const MachineFacts& machine,
                                            const Layout& layout, int64_t available) {
  const int precision = static_cast<int>(layout.precision);
  const int blocks = static_cast<int>(facts.blocks.size());
  ComponentPlan plan;
  plan.name = facts.name;
  plan.residency = layout.residency;
  plan.precision = layout.precision;
  const int64_t activations = facts.activation_bytes + facts.job_cache_bytes;
  const int reads = std::max(1, facts.passes / std::max(1, facts.passes_per_weight_read));
  const double compute_per_read =
      facts.flops_per_pass * facts.passes_per_weight_read / rates_for(machine).compute_flops;

  if (layout.residency == Residency::Mapped) {
    plan.resident_blocks = blocks;
    // Off a host-only device, a mapped component runs on the CPU (a recovery's last rung for the VAE):
    // nothing of it is on the device.
    plan.phase_peak_bytes = machine.device_is_host ? activations : 0;
    plan.predicted_pass_s = compute_per_read;
    plan.predicted_phase_s = reads * compute_per_read;
    if (plan.phase_peak_bytes > available) return std::nullopt;
    return plan;
  }

  auto resident_at = [&](int index, int resident) { return block_is_resident(index, blocks, resident); };
  // The stream ring: slots for the largest streamed block or once-read part.
  auto ring_bytes = [&](int resident) {
    if (resident >= blocks) return int64_t{0};
    int64_t largest = 0;
    for (int i = 0; i < blocks; ++i) {
      largest = std::max(largest, facts.blocks[i].once_bytes[precision]);
      if (!resident_at(i, resident)) largest = std::max(largest, facts.blocks[i].bytes[precision]);
    }
    return largest * kStreamSlots;
  };
  auto placed_bytes = [&](int resident) {
    int64_t total = facts.shared_bytes + ring_bytes(resident);
    for (int i = 0; i < blocks; ++i)
      if (resident_at(i, resident)) total += facts.blocks[i].bytes[precision];
    // Placed components keep their once-read weights; streamed ones pass them through the ring.
    if (resident >= blocks) total += once_bytes(facts, layout.precision, 0);
    return total;
  };

  int resident = layout.resident_blocks < 0 ? blocks : std::min(layout.resident_blocks, blocks);
  if (layout.resident_blocks < 0) {
    while (resident > 0 && placed_bytes(resident) + activations > available) --resident;
  }
  plan.resident_blocks = resident;
  plan.streamed_blocks = blocks - resident;
  plan.slots = plan.streamed_blocks > 0 ? kStreamSlots : 0;
  plan.placed_bytes = placed_bytes(resident);
  plan.phase_peak_bytes = plan.placed_bytes + activations;
  if (plan.phase_peak_bytes > available) return std::nullopt;

  int64_t streamed_per_read = 0;
  for (int i = 0; i < blocks; ++i)
    if (!resident_at(i, resident)) streamed_per_read += facts.blocks[i].bytes[precision];
  const int64_t streamed_once = resident == blocks ? 0 : once_bytes(facts, layout.precision, 0);
  const Rates rates = rates_for(machine);
  const double copy_per_read = static_cast<double>(streamed_per_read) / rates.stream_bytes;
  plan.predicted_pass_s =
      rates.overlapped ? std::max(compute_per_read, copy_per_read) : compute_per_read + copy_per_read;
  const double placing = static_cast<double>(plan.placed_bytes - ring_bytes(resident)) / rates.place_bytes;
  const double once = static_cast<double>(streamed_once) / rates.stream_bytes;
  plan.predicted_phase_s = reads * plan.predicted_pass_s + placing + once;
  return plan;
}

bool precision_allowed(WeightPrecision precision, Quality quality) {
  switch (precision) {
    case WeightPrecision::Lossless:
      return true;
    case WeightPrecision::Fp8:
      return quality != Quality::Lossless;
    case WeightPrecision::Nf4:
      return quality == Quality::FourBit;
  }
  return false;
}

// A whole plan: every component's layout, with phases either sharing the device (all resident) or
// each having it to itself (offloaded between phases).
std::optional<MemoryPlan> assemble(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                                   const std::vector<Layout>& layouts) {
  MemoryPlan plan;
  plan.device = machine.device;
  plan.device_budget = machine.device_budget;
  plan.host_budget = machine.host_budget;
  // Resident components hold their weights through every phase; each phase gets what they leave.
  std::vector<int64_t> resident_bytes(components.size(), 0);
  for (size_t i = 0; i < components.size(); ++i) {
    if (layouts[i].residency != Residency::Resident) continue;
    std::optional<ComponentPlan> part =
        plan_component(components[i], machine, layouts[i], machine.device_budget);
    if (!part) return std::nullopt;
    resident_bytes[i] = part->placed_bytes;
  }
  int64_t resident_total = 0;
  for (int64_t bytes : resident_bytes) resident_total += bytes;
  for (size_t i = 0; i < components.size(); ++i) {
    const int64_t others = resident_total - resident_bytes[i];
    std::optional<ComponentPlan> part =
        plan_component(components[i], machine, layouts[i], machine.device_budget - others);
    if (!part) return std::nullopt;
    ComponentPlan placed = *part;
    placed.phase_peak_bytes += others;
    plan.host_copy_bytes += components[i].host_copy_bytes[static_cast<int>(layouts[i].precision)];
    plan.predicted_peak_bytes = std::max(plan.predicted_peak_bytes, placed.phase_peak_bytes);
    plan.predicted_total_s += placed.predicted_phase_s;
    plan.components.push_back(std::move(placed));
  }
  // The copies live in host memory for the whole job, beside whatever the page cache keeps mapped.
  if (plan.host_copy_bytes > machine.host_budget) return std::nullopt;
  return plan;
}

std::vector<Layout> uniform(size_t count, Residency residency, int resident_blocks) {
  return std::vector<Layout>(count, Layout{residency, WeightPrecision::Lossless, resident_blocks});
}

// The layouts a strategy allows; auto gets every combination worth comparing.
std::vector<std::vector<Layout>> candidates(const std::vector<ComponentFacts>& components,
                                            const MachineFacts& machine, Strategy strategy, Quality quality) {
  const size_t n = components.size();
  auto with_transformer_precision = [&](std::vector<Layout> layouts, WeightPrecision precision, int blocks) {
    for (size_t i = 0; i < n; ++i) {
      if (components[i].quantizable) layouts[i] = {layouts[i].residency, precision, blocks};
    }
    return layouts;
  };
  switch (strategy) {
    case Strategy::Bf16Full:
      return {uniform(n, Residency::Resident, -2)};
    case Strategy::ModelOffload:
      return {uniform(n, Residency::Offloaded, -2)};
    case Strategy::SequentialOffload:
      return {uniform(n, Residency::Offloaded, 0)};
    case Strategy::Fp8:
    case Strategy::Nf4: {
      WeightPrecision precision = strategy == Strategy::Fp8 ? WeightPrecision::Fp8 : WeightPrecision::Nf4;
      return {with_transformer_precision(uniform(n, Residency::Resident, -2), precision, -2),
              with_transformer_precision(uniform(n, Residency::Offloaded, -1), precision, -2)};
    }
    case Strategy::Auto:
      break;
  }
  std::vector<std::vector<Layout>> all;
  if (machine.device_is_host) all.push_back(uniform(n, Residency::Mapped, -2));
  for (WeightPrecision precision : {WeightPrecision::Lossless, WeightPrecision::Fp8, WeightPrecision::Nf4}) {
    if (!precision_allowed(precision, quality)) continue;
    all.push_back(with_transformer_precision(uniform(n, Residency::Resident, -2), precision, -2));
    all.push_back(with_transformer_precision(uniform(n, Residency::Offloaded, -1), precision, -1));
  }
  return all;
}

// -2 in a layout means "all blocks", which plan_component reads as a count past the end.
void expand_all_blocks(std::vector<Layout>& layouts) {
  for (Layout& layout : layouts) {
    if (layout.resident_blocks == -2) layout.resident_blocks = std::numeric_limits<int>::max();
  }
}

std::optional<MemoryPlan> best_plan(const std::vector<ComponentFacts>& components,
                                    const MachineFacts& machine, Strategy strategy, Quality quality) {
  std::optional<MemoryPlan> best;
  for (std::vector<Layout> layouts : candidates(components, machine, strategy, quality)) {
    expand_all_blocks(layouts);
    std::optional<MemoryPlan> plan = assemble(components, machine, layouts);
    // Ties go to the earlier candidate: lossless before quantized, resident before offloaded.
    if (plan && (!best || plan->predicted_total_s < best->predicted_total_s * 0.999)) best = std::move(plan);
  }
  return best;
}

// The device bytes a strategy needs here, ignoring the budget: for the error message.
int64_t bytes_needed(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                     Strategy strategy, Quality quality) {
  MachineFacts unlimited = machine;
  unlimited.device_budget = std::numeric_limits<int64_t>::max() / 4;
  std::optional<MemoryPlan> plan = best_plan(components, unlimited, strategy, quality);
  return plan ? plan->predicted_peak_bytes : 0;
}

Strategy matching_preset(const MemoryPlan& plan) {
  bool all_resident = true, all_offloaded = true, none_streamed = true, all_streamed = true;
  WeightPrecision transformer_precision = WeightPrecision::Lossless;
  for (const ComponentPlan& part : plan.components) {
    all_resident &= part.residency == Residency::Resident;
    all_offloaded &= part.residency == Residency::Offloaded;
    none_streamed &= part.streamed_blocks == 0;
    all_streamed &= part.resident_blocks == 0;
    if (part.name == "transformer") transformer_precision = part.precision;
  }
  if (transformer_precision == WeightPrecision::Fp8 && none_streamed) return Strategy::Fp8;
  if (transformer_precision == WeightPrecision::Nf4 && none_streamed) return Strategy::Nf4;
  if (transformer_precision != WeightPrecision::Lossless) return Strategy::Auto;
  if (all_resident && none_streamed) return Strategy::Bf16Full;
  if (all_offloaded && none_streamed) return Strategy::ModelOffload;
  if (all_offloaded && all_streamed) return Strategy::SequentialOffload;
  return Strategy::Auto;
}

}  // namespace

std::string_view strategy_name(Strategy strategy) {
  for (const auto& [value, text] : kStrategyNames)
    if (value == strategy) return text;
  return "?";
}
std::string_view quality_name(Quality quality) {
  for (const auto& [value, text] : kQualityNames)
    if (value == quality) return text;
  return "?";
}
std::string_view residency_name(Residency residency) {
  switch (residency) {
    case Residency::Mapped:
      return "mapped";
    case Residency::Resident:
      return "resident";
    case Residency::Offloaded:
      return "offloaded";
  }
  return "?";
}
std::string_view precision_name(WeightPrecision precision) {
  switch (precision) {
    case WeightPrecision::Lossless:
      return "lossless";
    case WeightPrecision::Fp8:
      return "fp8";
    case WeightPrecision::Nf4:
      return "nf4";
  }
  return "?";
}
Strategy parse_strategy(std::string_view name) {
  return parse_name(name, kStrategyNames, "strategy");
}
Quality parse_quality(std::string_view name) {
  return parse_name(name, kQualityNames, "quality");
}

int64_t ComponentFacts::block_bytes(WeightPrecision precision) const {
  int64_t total = 0;
  for (const BlockFacts& block : blocks)
    total += block.bytes[static_cast<int>(precision)] + block.once_bytes[static_cast<int>(precision)];
  return total;
}

bool block_is_resident(int index, int blocks, int resident) {
  const int64_t streamed = blocks - resident;
  if (streamed <= 0) return true;
  // Block i streams when the running share of streamed blocks crosses an integer there.
  return (int64_t{index} + 1) * streamed / blocks == int64_t{index} * streamed / blocks;
}

const ComponentPlan& MemoryPlan::component(std::string_view name) const {
  for (const ComponentPlan& part : components)
    if (part.name == name) return part;
  throw Error("the memory plan has no component '" + std::string(name) + "'");
}

ComponentPlan& MemoryPlan::component(std::string_view name) {
  return const_cast<ComponentPlan&>(std::as_const(*this).component(name));
}

std::vector<std::string> MemoryPlan::describe() const {
  std::vector<std::string> lines;
  char text[256];
  const bool matched = strategy == Strategy::Auto && chosen != Strategy::Auto;
  std::snprintf(text, sizeof(text),
                "plan: strategy %s%s%s, quality %s, %s budget %s, host budget %s (weight copies %s)",
                std::string(strategy_name(strategy)).c_str(), matched ? " -> " : "",
                matched ? std::string(strategy_name(chosen)).c_str() : "",
                std::string(quality_name(quality)).c_str(), device.str().c_str(),
                format_bytes(device_budget).c_str(), format_bytes(host_budget).c_str(),
                format_bytes(host_copy_bytes).c_str());
  lines.push_back(text);
  for (const ComponentPlan& part : components) {
    std::string placement;
    if (part.residency == Residency::Mapped) {
      placement = device.is_cpu() ? "mapped from the checkpoint" : "on the CPU, from host memory";
    } else {
      placement = std::string(residency_name(part.residency)) + ", " + std::to_string(part.resident_blocks) +
                  " blocks on the device";
      if (part.streamed_blocks > 0 && part.resident_blocks > 0) placement += " (interleaved)";
      if (part.streamed_blocks > 0) {
        placement += ", " + std::to_string(part.streamed_blocks) + " streamed through " +
                     std::to_string(part.slots) + " slots from the checkpoint via pinned staging";
      }
    }
    std::snprintf(text, sizeof(text), "  %-12s %s, %s weights, peak %s, %.3f s/%s", part.name.c_str(),
                  placement.c_str(), std::string(precision_name(part.precision)).c_str(),
                  format_bytes(part.phase_peak_bytes).c_str(), part.predicted_pass_s,
                  part.name == "transformer" ? "step" : "pass");
    lines.push_back(text);
  }
  return lines;
}

nlohmann::json MemoryPlan::to_json() const {
  nlohmann::json parts = nlohmann::json::array();
  for (const ComponentPlan& part : components) {
    parts.push_back({{"name", part.name},
                     {"residency", residency_name(part.residency)},
                     {"precision", precision_name(part.precision)},
                     {"resident_blocks", part.resident_blocks},
                     {"streamed_blocks", part.streamed_blocks},
                     {"slots", part.slots},
                     {"placed_bytes", part.placed_bytes},
                     {"phase_peak_bytes", part.phase_peak_bytes},
                     {"predicted_pass_s", part.predicted_pass_s},
                     {"predicted_phase_s", part.predicted_phase_s}});
  }
  return {{"strategy", strategy_name(strategy)},
          {"chosen", strategy_name(chosen)},
          {"quality", quality_name(quality)},
          {"device", device.str()},
          {"device_budget_bytes", device_budget},
          {"host_budget_bytes", host_budget},
          {"host_copy_bytes", host_copy_bytes},
          {"predicted_peak_bytes", predicted_peak_bytes},
          {"predicted_total_s", predicted_total_s},
          {"components", parts},
          {"lines", describe()}};
}

MemoryPlan plan_memory(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                       const PlanRequest& request) {
  // A forced quantized preset is consent to its precision.
  Quality quality = request.quality;
  if (request.strategy == Strategy::Fp8 && quality == Quality::Lossless) quality = Quality::Fp8;
  if (request.strategy == Strategy::Nf4) quality = Quality::FourBit;

  std::optional<MemoryPlan> plan = best_plan(components, machine, request.strategy, quality);
  if (!plan) {
    MachineFacts roomy_host = machine;
    roomy_host.host_budget = std::numeric_limits<int64_t>::max() / 4;
    if (std::optional<MemoryPlan> host_bound = best_plan(components, roomy_host, request.strategy, quality)) {
      throw Error("strategy " + std::string(strategy_name(request.strategy)) + " needs " +
                  format_bytes(host_bound->host_copy_bytes) +
                  " of host memory for its converted or quantized copies of the weights, but the host budget "
                  "is " +
                  format_bytes(machine.host_budget) +
                  " (free host memory, raise --ram-budget, or use a lossless plan of a checkpoint stored in "
                  "the compute dtype, which needs no copies)");
    }
    std::string message = "strategy " + std::string(strategy_name(request.strategy)) + " needs " +
                          format_bytes(bytes_needed(components, machine, request.strategy, quality)) +
                          " on " + machine.device.str() + " but the budget is " +
                          format_bytes(machine.device_budget);
    // Lossless presets first: a suggestion should not lower the quality unasked.
    std::string fits;
    for (Strategy other : {Strategy::ModelOffload, Strategy::SequentialOffload, Strategy::Bf16Full,
                           Strategy::Fp8, Strategy::Nf4}) {
      if (other != request.strategy && best_plan(components, machine, other, quality)) {
        fits = std::string(strategy_name(other));
        break;
      }
    }
    message += fits.empty() ? "; no strategy fits: the smallest plan (sequential_offload) needs " +
                                  format_bytes(bytes_needed(components, machine, Strategy::SequentialOffload,
                                                            Quality::Lossless)) +
                                  " (lower the resolution, or free device memory)"
                            : "; --strategy " + fits + " fits (or use --strategy auto)";
    throw Error(message);
  }
  plan->strategy = request.strategy;
  plan->quality = quality;
  plan->chosen = request.strategy == Strategy::Auto ? matching_preset(*plan) : request.strategy;
  return *plan;
}

MemoryPlan evaluate_plan(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                         const MemoryPlan& layout) {
  check(layout.components.size() == components.size(), "evaluate_plan: the layout does not match the facts");
  std::vector<Layout> layouts;
  for (const ComponentPlan& part : layout.components)
    layouts.push_back({part.residency, part.precision, part.resident_blocks});
  MachineFacts unlimited = machine;
  unlimited.device_budget = unlimited.host_budget = std::numeric_limits<int64_t>::max() / 4;
  MemoryPlan plan = *assemble(components, unlimited, layouts);
  plan.strategy = layout.strategy;
  plan.chosen = matching_preset(plan);
  plan.quality = layout.quality;
  plan.device_budget = layout.device_budget;
  plan.host_budget = layout.host_budget;
  return plan;
}

}  // namespace canvas
