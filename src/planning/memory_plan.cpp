// The plan's names, lookups and the ways it is shown: console lines and JSON for the image metadata.
#include <cstdio>
#include <utility>

#include "planning/planner.h"
#include "util/error.h"
#include "util/format.h"

namespace canvas {

namespace {

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

template <typename Enum, size_t N>
std::string_view name_of(Enum value, const std::pair<Enum, std::string_view> (&names)[N]) {
  for (const auto& [entry, text] : names)
    if (entry == value) return text;
  return "?";
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
constexpr std::pair<Residency, std::string_view> kResidencyNames[] = {
    {Residency::Mapped, "mapped"}, {Residency::Resident, "resident"}, {Residency::Offloaded, "offloaded"}};
constexpr std::pair<WeightPrecision, std::string_view> kPrecisionNames[] = {
    {WeightPrecision::Lossless, "lossless"}, {WeightPrecision::Fp8, "fp8"}, {WeightPrecision::Nf4, "nf4"}};
constexpr std::pair<Parallelism, std::string_view> kParallelismNames[] = {
    {Parallelism::Auto, "auto"},
    {Parallelism::None, "none"},
    {Parallelism::Components, "components"},
    {Parallelism::Pipeline, "pipeline"},
    {Parallelism::Sequence, "sequence"},
    {Parallelism::Guidance, "cfg"}};
constexpr std::pair<Spread, std::string_view> kSpreadNames[] = {{Spread::One, "one"},
                                                                {Spread::Pipeline, "pipeline"},
                                                                {Spread::Sequence, "sequence"},
                                                                {Spread::Guidance, "cfg"}};

std::string blocks_text(int resident, int streamed, int slots, int64_t page_locked_bytes) {
  std::string text = std::to_string(resident) + " blocks on the device";
  if (streamed > 0 && resident > 0) text += " (interleaved)";
  if (streamed > 0) {
    text += ", " + std::to_string(streamed) + " streamed through " + std::to_string(slots) +
            " slots from the checkpoint";
    text += page_locked_bytes > 0 ? " (" + format_bytes(page_locked_bytes) +
                                        " of its pages locked in place, the rest via pinned staging)"
                                  : " via pinned staging";
  }
  return text;
}

// Where a component's weights are, in words.
std::string placement_text(const ComponentPlan& part, const MemoryPlan& plan) {
  if (part.residency == Residency::Mapped)
    return plan.device.is_cpu() ? "mapped from the checkpoint" : "on the CPU, from host memory";
  const std::string residency(residency_name(part.residency));
  const bool several_pools = plan.pools.size() > 1;
  switch (part.spread) {
    case Spread::One: {
      std::string text =
          residency + ", " +
          blocks_text(part.resident_blocks, part.streamed_blocks, part.slots, part.page_locked_bytes);
      return several_pools && !part.shares.empty() ? "on " + part.shares.front().device.str() + ", " + text
                                                   : text;
    }
    case Spread::Pipeline: {
      std::string text = residency + ", pipeline split:";
      for (const DeviceShare& share : part.shares) {
        text +=
            (&share == &part.shares.front() ? " " : "; ") + share.device.str() + " blocks " +
            std::to_string(share.first_block) + "-" + std::to_string(share.first_block + share.blocks - 1) +
            " (" +
            blocks_text(share.resident_blocks, share.streamed_blocks, share.slots, share.page_locked_bytes) +
            ")";
      }
      return text;
    }
    case Spread::Sequence:
    case Spread::Guidance: {
      std::string devices;
      for (const DeviceShare& share : part.shares)
        devices += (devices.empty() ? "" : ", ") + share.device.str();
      const std::string by = plan.exchange.empty() ? "" : " by " + plan.exchange;
      const std::string how = part.spread == Spread::Sequence
                                  ? "sequence parallel over " + devices +
                                        " (tokens split, attention heads exchanged all-to-all" + by + ")"
                                  : "CFG parallel over " + devices + " (one guidance half on each)";
      return residency + ", " + how + ", each with " +
             blocks_text(part.resident_blocks, part.streamed_blocks, part.slots, part.page_locked_bytes);
    }
  }
  return residency;
}

}  // namespace

std::string_view strategy_name(Strategy strategy) {
  return name_of(strategy, kStrategyNames);
}
std::string_view quality_name(Quality quality) {
  return name_of(quality, kQualityNames);
}
std::string_view residency_name(Residency residency) {
  return name_of(residency, kResidencyNames);
}
std::string_view precision_name(WeightPrecision precision) {
  return name_of(precision, kPrecisionNames);
}
std::string_view parallelism_name(Parallelism parallelism) {
  return name_of(parallelism, kParallelismNames);
}
std::string_view spread_name(Spread spread) {
  return name_of(spread, kSpreadNames);
}
Strategy parse_strategy(std::string_view name) {
  return parse_name(name, kStrategyNames, "strategy");
}
Quality parse_quality(std::string_view name) {
  return parse_name(name, kQualityNames, "quality");
}
Parallelism parse_parallelism(std::string_view name) {
  return parse_name(name, kParallelismNames, "parallelism");
}

std::vector<DevicePool> MachineFacts::pools() const {
  std::vector<DevicePool> all{{device, device_budget}};
  all.insert(all.end(), extra_pools.begin(), extra_pools.end());
  return all;
}

const ComponentPlan* MemoryPlan::find(Component component) const {
  for (const ComponentPlan& part : components)
    if (part.component == component) return &part;
  return nullptr;
}

ComponentPlan* MemoryPlan::find(Component component) {
  return const_cast<ComponentPlan*>(std::as_const(*this).find(component));
}

const ComponentPlan& MemoryPlan::component(Component component) const {
  if (const ComponentPlan* part = find(component)) return *part;
  throw Error("the memory plan has no component '" + component_label(component) + "'");
}

ComponentPlan& MemoryPlan::component(Component component) {
  return const_cast<ComponentPlan&>(std::as_const(*this).component(component));
}

std::vector<std::string> MemoryPlan::describe() const {
  std::vector<std::string> lines;
  const bool matched = strategy == Strategy::Auto && chosen != Strategy::Auto;
  std::string budgets;
  for (const PoolUse& pool : pools)
    budgets += (budgets.empty() ? "" : ", ") + pool.device.str() + " budget " + format_bytes(pool.budget);
  if (pools.empty()) budgets = device.str() + " budget " + format_bytes(device_budget);
  std::string header = "plan: strategy " + std::string(strategy_name(strategy)) +
                       (matched ? " -> " + std::string(strategy_name(chosen)) : "") + ", quality " +
                       std::string(quality_name(quality));
  if (pools.size() > 1) header += ", parallelism " + std::string(parallelism_name(parallelism));
  header += ", " + budgets + ", host budget " + format_bytes(host_budget) + " (weight copies " +
            format_bytes(host_copy_bytes) + ")";
  if (page_lock_budget > 0) header += ", page-lock budget " + format_bytes(page_lock_budget);
  lines.push_back(header);
  char text[1024];
  for (const ComponentPlan& part : components) {
    std::snprintf(text, sizeof(text), "  %-12s %s, %s weights, peak %s, %.3f s/%s",
                  component_label(part.component).c_str(), placement_text(part, *this).c_str(),
                  std::string(precision_name(part.precision)).c_str(),
                  format_bytes(part.phase_peak_bytes).c_str(), part.predicted_pass_s,
                  part.component == Component::Transformer ? "step" : "pass");
    lines.push_back(text);
  }
  return lines;
}

nlohmann::json MemoryPlan::to_json() const {
  nlohmann::json parts = nlohmann::json::array();
  for (const ComponentPlan& part : components) {
    nlohmann::json shares = nlohmann::json::array();
    for (const DeviceShare& share : part.shares) {
      shares.push_back({{"device", share.device.str()},
                        {"first_block", share.first_block},
                        {"blocks", share.blocks},
                        {"resident_blocks", share.resident_blocks},
                        {"streamed_blocks", share.streamed_blocks},
                        {"page_locked_bytes", share.page_locked_bytes},
                        {"placed_bytes", share.placed_bytes},
                        {"phase_peak_bytes", share.phase_peak_bytes}});
    }
    parts.push_back({{"name", component_name(part.component)},
                     {"residency", residency_name(part.residency)},
                     {"precision", precision_name(part.precision)},
                     {"spread", spread_name(part.spread)},
                     {"resident_blocks", part.resident_blocks},
                     {"streamed_blocks", part.streamed_blocks},
                     {"slots", part.slots},
                     {"page_locked_bytes", part.page_locked_bytes},
                     {"placed_bytes", part.placed_bytes},
                     {"phase_peak_bytes", part.phase_peak_bytes},
                     {"predicted_pass_s", part.predicted_pass_s},
                     {"predicted_phase_s", part.predicted_phase_s},
                     {"shares", shares}});
  }
  nlohmann::json pool_uses = nlohmann::json::array();
  for (const PoolUse& pool : pools) {
    pool_uses.push_back({{"device", pool.device.str()},
                         {"budget_bytes", pool.budget},
                         {"predicted_peak_bytes", pool.predicted_peak_bytes}});
  }
  return {{"strategy", strategy_name(strategy)},
          {"chosen", strategy_name(chosen)},
          {"quality", quality_name(quality)},
          {"parallelism", parallelism_name(parallelism)},
          {"exchange", exchange},
          {"device", device.str()},
          {"device_budget_bytes", device_budget},
          {"host_budget_bytes", host_budget},
          {"host_copy_bytes", host_copy_bytes},
          {"page_lock_budget_bytes", page_lock_budget},
          {"predicted_peak_bytes", predicted_peak_bytes},
          {"predicted_total_s", predicted_total_s},
          {"pools", pool_uses},
          {"components", parts},
          {"lines", describe()}};
}

}  // namespace canvas
