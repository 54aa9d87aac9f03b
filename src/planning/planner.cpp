#include "planning/planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "planning/plan_candidates.h"
#include "util/error.h"
#include "util/format.h"

namespace canvas {

namespace {

using planning::kAllBlocks;
using planning::kAsManyAsFit;
using planning::Layout;

// Two slots let one block's copy run while the block before it computes; a third adds nothing when
// copies are slower than compute and only takes memory from resident blocks.
constexpr int kStreamSlots = 2;
struct Rates {
  double compute_flops;     // per second
  double attention_scores;  // per second; 0 when not measured
  double stream_bytes;      // streamed weights, per second
  double locked_bytes;      // streamed weights whose pages are locked in place, per second
  double place_bytes;       // placing weights from the checkpoint, per second
  double device_to_device_bytes;
  bool overlapped;  // copies run beside compute
};

Rates rates_for(const MachineFacts& machine) {
  const MachineProfile& p = machine.profile;
  Rates rates{};
  rates.compute_flops = std::max(p.gemm_flops_per_s, 1.0);
  rates.attention_scores = p.attention_scores_per_s;
  rates.device_to_device_bytes = std::max(machine.interconnect_bytes_per_s, 1.0);
  if (machine.device_is_host) {
    rates.stream_bytes = rates.place_bytes = std::max(p.host_memcpy_bytes_per_s, 1.0);
    rates.locked_bytes = rates.stream_bytes;
    rates.overlapped = false;
  } else {
    // Streamed weights go from the mapped checkpoint through the upload queue's pinned staging ring, or
    // straight from the checkpoint's pages where they are locked in place: pinned host memory is only
    // ever that ring, never a copy of the model.
    rates.stream_bytes = std::max(p.host_to_device_staged_bytes_per_s, 1.0);
    rates.locked_bytes = std::max(p.host_to_device_pinned_bytes_per_s, 1.0);
    rates.place_bytes = std::max(p.host_to_device_pageable_bytes_per_s, 1.0);
    rates.overlapped = true;
  }
  return rates;
}

// One share's arrangement and its cost: weights placed, and the time to copy what streams.
struct ShareCost {
  DeviceShare share;
  double copy_per_read_s = 0;  // streamed weights of one read of the blocks
  double setup_s = 0;          // placing the weights and streaming the once-read ones
};

// Blocks [first, first + count) of `facts` on pool `pool` with `resident` of them placed (kAsManyAsFit:
// as many as `available` holds beside `activations`), or nullopt when it cannot fit.
std::optional<ShareCost> plan_share(const ComponentFacts& facts, const MachineFacts& machine,
                                    WeightPrecision precision_value, int first, int count, int resident,
                                    bool holds_shared, int pool, int64_t available, int64_t activations) {
  const int precision = static_cast<int>(precision_value);
  const BlockFacts* blocks = facts.blocks.data() + first;
  auto resident_at = [&](int index, int placed) { return block_is_resident(index, count, placed); };
  // The stream ring: slots for the largest streamed block or once-read part.
  auto ring_bytes = [&](int placed) {
    if (placed >= count) return int64_t{0};
    int64_t largest = 0;
    for (int i = 0; i < count; ++i) {
      largest = std::max(largest, blocks[i].once_bytes[precision]);
      if (!resident_at(i, placed)) largest = std::max(largest, blocks[i].bytes[precision]);
    }
    return largest * kStreamSlots;
  };
  auto once_bytes = [&] {
    int64_t total = 0;
    for (int i = 0; i < count; ++i) total += blocks[i].once_bytes[precision];
    return total;
  };
  auto placed_bytes = [&](int placed) {
    int64_t total = (holds_shared ? facts.shared_bytes : 0) + ring_bytes(placed);
    for (int i = 0; i < count; ++i)
      if (resident_at(i, placed)) total += blocks[i].bytes[precision];
    // Placed shares keep their once-read weights; streamed ones pass them through the ring.
    if (placed >= count) total += once_bytes();
    return total;
  };

  int placed = resident == kAsManyAsFit ? count : std::min(resident, count);
  if (resident == kAsManyAsFit) {
    while (placed > 0 && placed_bytes(placed) + activations > available) --placed;
  }
  ShareCost cost;
  DeviceShare& share = cost.share;
  share.device = machine.pools()[static_cast<size_t>(pool)].device;
  share.pool = pool;
  share.first_block = first;
  share.blocks = count;
  share.resident_blocks = placed;
  share.streamed_blocks = count - placed;
  share.slots = share.streamed_blocks > 0 ? kStreamSlots : 0;
  share.holds_shared = holds_shared;
  share.placed_bytes = placed_bytes(placed);
  share.phase_peak_bytes = share.placed_bytes + activations;
  if (share.phase_peak_bytes > available) return std::nullopt;

  // Whole streamed blocks have their pages locked in order while they fit the budget (WeightPageLocks),
  // when they are read as mapped from the checkpoint rather than from converted copies. The budget goes
  // to the transformer, the one component streamed on every step.
  int64_t streamed_per_read = 0, locked_per_read = 0;
  bool locking = facts.component == Component::Transformer && facts.host_copy_bytes[precision] == 0;
  for (int i = 0; i < count; ++i) {
    if (resident_at(i, placed)) continue;
    const int64_t bytes = blocks[i].bytes[precision];
    streamed_per_read += bytes;
    locking = locking && locked_per_read + bytes <= machine.page_lock_budget;
    if (locking) locked_per_read += bytes;
  }
  share.page_locked_bytes = locked_per_read;
  const Rates rates = rates_for(machine);
  cost.copy_per_read_s = static_cast<double>(streamed_per_read - locked_per_read) / rates.stream_bytes +
                         static_cast<double>(locked_per_read) / rates.locked_bytes;
  const double placing = static_cast<double>(share.placed_bytes - ring_bytes(placed)) / rates.place_bytes;
  const double once = placed == count ? 0.0 : static_cast<double>(once_bytes()) / rates.stream_bytes;
  cost.setup_s = placing + once;
  return cost;
}

// The component's totals from its shares, and its predicted times from the shares' costs. `compute_per_read`
// and `exchange_per_read` are one read's compute and device-to-device traffic.
ComponentPlan summarize(const ComponentFacts& facts, const Layout& layout,
                        const std::vector<ShareCost>& costs, double compute_per_read,
                        double exchange_per_read, const Rates& rates) {
  ComponentPlan plan;
  plan.component = facts.component;
  plan.residency = layout.residency;
  plan.precision = layout.precision;
  plan.spread = layout.spread;
  double copy_per_read = 0, setup = 0;
  for (const ShareCost& cost : costs) {
    const DeviceShare& share = cost.share;
    plan.shares.push_back(share);
    plan.phase_peak_bytes = std::max(plan.phase_peak_bytes, share.phase_peak_bytes);
    setup = std::max(setup, cost.setup_s);
    if (is_replicated(layout.spread)) {
      // Every device holds the same arrangement; their streams share the host's copy bandwidth.
      plan.resident_blocks = share.resident_blocks;
      plan.streamed_blocks = share.streamed_blocks;
      plan.slots = share.slots;
      plan.placed_bytes = std::max(plan.placed_bytes, share.placed_bytes);
      // The replicas read the same pages: locked once.
      plan.page_locked_bytes = std::max(plan.page_locked_bytes, share.page_locked_bytes);
      copy_per_read += cost.copy_per_read_s;
    } else {
      plan.resident_blocks += share.resident_blocks;
      plan.streamed_blocks += share.streamed_blocks;
      plan.slots = std::max(plan.slots, share.slots);
      plan.placed_bytes += share.placed_bytes;
      plan.page_locked_bytes += share.page_locked_bytes;
      copy_per_read = std::max(copy_per_read, cost.copy_per_read_s);
    }
  }
  // A pipeline's devices take their turns, so their compute adds up as on one device; each share's
  // copies overlap its own compute.
  double pass =
      rates.overlapped ? std::max(compute_per_read, copy_per_read) : compute_per_read + copy_per_read;
  pass += exchange_per_read;
  plan.predicted_pass_s = pass;
  const int reads = std::max(1, facts.passes / std::max(1, facts.passes_per_weight_read));
  plan.predicted_phase_s = reads * pass + setup;
  return plan;
}

// Splits `blocks` into one run per pool, in pool order: each takes as many as it holds whole beside the
// activations (the last takes the rest), so the fewest blocks stream.
std::vector<int> pipeline_split(const ComponentFacts& facts, const MachineFacts& machine,
                                WeightPrecision precision, const std::vector<int64_t>& available,
                                int64_t activations) {
  const int blocks = static_cast<int>(facts.blocks.size());
  const int pools = static_cast<int>(available.size());
  std::vector<int> split;
  int first = 0;
  for (int pool = 0; pool < pools && first < blocks; ++pool) {
    int count = blocks - first;
    // Leave at least one block for each pool after this one.
    const int later_pools = pools - pool - 1;
    count = std::max(1, count - later_pools);
    if (pool + 1 < pools) {
      while (count > 1 && !plan_share(facts, machine, precision, first, count, kAllBlocks, pool == 0, pool,
                                      available[pool], activations))
        --count;
    }
    split.push_back(count);
    first += count;
  }
  return split;
}

// The component's plan with `layout`, given each pool's `available` device bytes for its phase, or
// nullopt when it cannot fit.
std::optional<ComponentPlan> plan_component(const ComponentFacts& facts, const MachineFacts& machine,
                                            const Layout& layout, const std::vector<int64_t>& available) {
  const int blocks = static_cast<int>(facts.blocks.size());
  const int64_t activations = facts.activation_bytes + facts.job_cache_bytes;
  const Rates rates = rates_for(machine);
  // A pass is bound by its products, or, where a small head dimension makes them cheap (the CPU), by the
  // attention scores' softmax and traffic.
  double compute_per_pass = facts.flops_per_pass / rates.compute_flops;
  if (rates.attention_scores > 0)
    compute_per_pass = std::max(compute_per_pass, facts.attention_scores_per_pass / rates.attention_scores);
  const double compute_per_read = compute_per_pass * facts.passes_per_weight_read;

  if (layout.residency == Residency::Mapped) {
    ComponentPlan plan;
    plan.component = facts.component;
    plan.residency = Residency::Mapped;
    plan.precision = layout.precision;
    plan.resident_blocks = blocks;
    // Off a host-only device, a mapped component runs on the CPU (a recovery's last rung for the VAE):
    // nothing of it is on the device.
    plan.phase_peak_bytes = machine.device_is_host ? activations : 0;
    plan.predicted_pass_s = compute_per_read;
    plan.predicted_phase_s =
        std::max(1, facts.passes / std::max(1, facts.passes_per_weight_read)) * compute_per_read;
    if (plan.phase_peak_bytes > available[0]) return std::nullopt;
    if (machine.device_is_host) {
      DeviceShare share;
      share.device = machine.device;
      share.blocks = share.resident_blocks = blocks;
      share.phase_peak_bytes = activations;
      plan.shares.push_back(share);
    }
    return plan;
  }

  std::vector<ShareCost> costs;
  switch (layout.spread) {
    case Spread::One: {
      auto cost = plan_share(facts, machine, layout.precision, 0, blocks, layout.resident_blocks, true,
                             layout.pool, available[static_cast<size_t>(layout.pool)], activations);
      if (!cost) return std::nullopt;
      costs.push_back(*cost);
      return summarize(facts, layout, costs, compute_per_read, 0.0, rates);
    }
    case Spread::Pipeline: {
      std::vector<int> split = layout.share_blocks.empty()
                                   ? pipeline_split(facts, machine, layout.precision, available, activations)
                                   : layout.share_blocks;
      if (split.size() < 2) return std::nullopt;
      int first = 0;
      for (size_t pool = 0; pool < split.size(); ++pool) {
        const int resident =
            layout.share_resident.empty() ? layout.resident_blocks : layout.share_resident[pool];
        auto cost = plan_share(facts, machine, layout.precision, first, split[pool], resident, pool == 0,
                               static_cast<int>(pool), available[pool], activations);
        if (!cost) return std::nullopt;
        costs.push_back(*cost);
        first += split[pool];
      }
      // Each boundary hands the hidden state on, and the last device hands it back for the final layers.
      const double exchange = static_cast<double>(split.size()) * facts.passes_per_weight_read *
                              static_cast<double>(facts.boundary_bytes) / rates.device_to_device_bytes;
      return summarize(facts, layout, costs, compute_per_read, exchange, rates);
    }
    case Spread::Sequence:
    case Spread::Guidance: {
      const int devices = static_cast<int>(available.size());
      const bool sequence = layout.spread == Spread::Sequence;
      if (sequence && (facts.attention_heads % devices != 0 || facts.sequence_devices != devices))
        return std::nullopt;
      if (!sequence && (facts.passes_per_weight_read != devices || facts.guidance_activation_bytes == 0))
        return std::nullopt;
      const int64_t device_activations =
          (sequence ? facts.sequence_activation_bytes : facts.guidance_activation_bytes) +
          facts.job_cache_bytes;
      auto replica = [&](int pool, int resident) {
        return plan_share(facts, machine, layout.precision, 0, blocks, resident, true, pool,
                          available[static_cast<size_t>(pool)], device_activations);
      };
      for (int pool = 0; pool < devices; ++pool) {
        auto cost = replica(pool, layout.resident_blocks);
        if (!cost) return std::nullopt;
        costs.push_back(*cost);
      }
      // The devices run the blocks in lock step, so they hold the same ones.
      const int resident = std::min_element(costs.begin(), costs.end(), [](const auto& a, const auto& b) {
                             return a.share.resident_blocks < b.share.resident_blocks;
                           })->share.resident_blocks;
      for (ShareCost& cost : costs) {
        if (cost.share.resident_blocks == resident) continue;
        // Fewer blocks can take more memory than all of them: the ring comes with the first streamed one.
        auto fewer = replica(cost.share.pool, resident);
        if (!fewer) return std::nullopt;
        cost = *fewer;
      }
      // Sequence: per block and pass, each device sends all but its own share of its tokens' queries, keys,
      // values and attention output, the devices at once. Guidance: each device's prediction comes back,
      // smaller than a hidden state.
      const double per_device = static_cast<double>(facts.boundary_bytes) / devices * (devices - 1) / devices;
      const double exchange = sequence
                                  ? static_cast<double>(blocks) * 4.0 * per_device *
                                        facts.passes_per_weight_read / rates.device_to_device_bytes
                                  : static_cast<double>(facts.boundary_bytes) / rates.device_to_device_bytes;
      return summarize(facts, layout, costs, compute_per_read / devices, exchange, rates);
    }
  }
  return std::nullopt;
}

// The device bytes a share holds on each pool while its component is resident.
void add_placed(const ComponentPlan& plan, std::vector<int64_t>& per_pool) {
  for (const DeviceShare& share : plan.shares)
    per_pool[static_cast<size_t>(share.pool)] += share.placed_bytes;
}

// A whole plan: every component's layout. Resident components hold their weights on their devices through
// every phase; each phase has the rest of each device.
std::optional<MemoryPlan> assemble(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                                   const std::vector<Layout>& layouts) {
  const std::vector<DevicePool> pools = machine.pools();
  const size_t pool_count = pools.size();
  std::vector<int64_t> budgets;
  for (const DevicePool& pool : pools) budgets.push_back(pool.budget);

  MemoryPlan plan;
  plan.device = machine.device;
  plan.device_budget = machine.device_budget;
  plan.host_budget = machine.host_budget;
  plan.page_lock_budget = machine.page_lock_budget;
  plan.exchange = machine.exchange;
  for (const DevicePool& pool : pools) plan.pools.push_back({pool.device, pool.budget, 0});
  std::vector<std::vector<int64_t>> resident_bytes(components.size(), std::vector<int64_t>(pool_count, 0));
  for (size_t i = 0; i < components.size(); ++i) {
    if (layouts[i].residency != Residency::Resident) continue;
    std::optional<ComponentPlan> part = plan_component(components[i], machine, layouts[i], budgets);
    if (!part) return std::nullopt;
    add_placed(*part, resident_bytes[i]);
  }
  for (size_t i = 0; i < components.size(); ++i) {
    std::vector<int64_t> others(pool_count, 0), available = budgets;
    for (size_t j = 0; j < components.size(); ++j) {
      if (j == i) continue;
      for (size_t p = 0; p < pool_count; ++p) others[p] += resident_bytes[j][p];
    }
    for (size_t p = 0; p < pool_count; ++p) available[p] -= others[p];
    std::optional<ComponentPlan> part = plan_component(components[i], machine, layouts[i], available);
    if (!part) return std::nullopt;
    ComponentPlan placed = *part;
    std::vector<int64_t> phase_peak = others;
    for (const DeviceShare& share : placed.shares)
      phase_peak[static_cast<size_t>(share.pool)] += share.phase_peak_bytes;
    placed.phase_peak_bytes = *std::max_element(phase_peak.begin(), phase_peak.end());
    for (size_t p = 0; p < pool_count; ++p)
      plan.pools[p].predicted_peak_bytes = std::max(plan.pools[p].predicted_peak_bytes, phase_peak[p]);
    plan.host_copy_bytes += components[i].host_copy_bytes[static_cast<int>(layouts[i].precision)];
    plan.predicted_peak_bytes = std::max(plan.predicted_peak_bytes, placed.phase_peak_bytes);
    plan.predicted_total_s += placed.predicted_phase_s;
    plan.components.push_back(std::move(placed));
  }
  // The copies live in host memory for the whole job, beside whatever the page cache keeps mapped.
  if (plan.host_copy_bytes > machine.host_budget) return std::nullopt;
  return plan;
}

std::optional<MemoryPlan> best_plan(const std::vector<ComponentFacts>& components,
                                    const MachineFacts& machine, Strategy strategy, Quality quality,
                                    Parallelism parallelism) {
  const int pools = static_cast<int>(machine.pools().size());
  std::optional<MemoryPlan> best;
  for (const std::vector<Layout>& base : planning::strategy_layouts(components, machine, strategy, quality)) {
    for (const std::vector<Layout>& layouts :
         planning::device_layouts(components, base, pools, parallelism)) {
      std::optional<MemoryPlan> plan = assemble(components, machine, layouts);
      // Ties go to the earlier candidate: lossless before quantized, resident before offloaded, one device
      // before several.
      if (plan && (!best || plan->predicted_total_s < best->predicted_total_s * 0.999))
        best = std::move(plan);
    }
  }
  return best;
}

// The device bytes a strategy needs here, ignoring the budget: for the error message.
int64_t bytes_needed(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                     Strategy strategy, Quality quality, Parallelism parallelism) {
  MachineFacts unlimited = machine;
  unlimited.device_budget = std::numeric_limits<int64_t>::max() / 4;
  for (DevicePool& pool : unlimited.extra_pools) pool.budget = unlimited.device_budget;
  std::optional<MemoryPlan> plan = best_plan(components, unlimited, strategy, quality, parallelism);
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
    if (part.component == Component::Transformer) transformer_precision = part.precision;
  }
  if (transformer_precision == WeightPrecision::Fp8 && none_streamed) return Strategy::Fp8;
  if (transformer_precision == WeightPrecision::Nf4 && none_streamed) return Strategy::Nf4;
  if (transformer_precision != WeightPrecision::Lossless) return Strategy::Auto;
  if (all_resident && none_streamed) return Strategy::Bf16Full;
  if (all_offloaded && none_streamed) return Strategy::ModelOffload;
  if (all_offloaded && all_streamed) return Strategy::SequentialOffload;
  return Strategy::Auto;
}

std::string pools_text(const MachineFacts& machine) {
  std::string text;
  for (const DevicePool& pool : machine.pools())
    text += (text.empty() ? "" : " + ") + pool.device.str() + " " + format_bytes(pool.budget);
  return text;
}

// The layout a plan was made with, its resident blocks as the plan now has them (a recovery may have
// lowered a component's total: a pipeline's shares give up blocks in proportion).
Layout layout_of(const ComponentPlan& part) {
  Layout layout(part.residency, part.precision, part.resident_blocks);
  layout.spread = part.spread;
  if (!part.shares.empty()) layout.pool = part.shares.front().pool;
  if (part.spread != Spread::Pipeline) return layout;
  int planned = 0;
  for (const DeviceShare& share : part.shares) {
    layout.share_blocks.push_back(share.blocks);
    layout.share_resident.push_back(share.resident_blocks);
    planned += share.resident_blocks;
  }
  if (part.resident_blocks < planned) {
    int left = part.resident_blocks;
    for (int& resident : layout.share_resident) {
      resident = static_cast<int>(int64_t{resident} * part.resident_blocks / planned);
      left -= resident;
    }
    for (size_t s = 0; s < layout.share_resident.size() && left > 0; ++s) {
      const int room = std::min(left, layout.share_blocks[s] - layout.share_resident[s]);
      layout.share_resident[s] += room;
      left -= room;
    }
  }
  layout.resident_blocks = 0;  // the shares' counts apply
  return layout;
}

// A forced way of spreading that no component can take fails here, saying why, rather than as a plan that
// does not fit.
void check_parallelism_applies(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                               Parallelism parallelism) {
  const int devices = static_cast<int>(machine.pools().size());
  auto any = [&](auto&& applies) { return std::any_of(components.begin(), components.end(), applies); };
  if (parallelism == Parallelism::Guidance) {
    int halves = 1;
    for (const ComponentFacts& facts : components) halves = std::max(halves, facts.passes_per_weight_read);
    check(halves == devices,
          "parallelism cfg runs one guidance half on each device, so it needs as many devices as "
          "halves: this job has " +
              std::to_string(halves) + (halves == 1 ? " (no guidance: CFG scale 1)" : "") + " and " +
              std::to_string(devices) + " devices");
  }
  if (parallelism == Parallelism::Sequence) {
    check(any([&](const ComponentFacts& facts) {
            return facts.attention_heads > 0 && facts.attention_heads % devices == 0 &&
                   facts.sequence_devices == devices;
          }),
          "parallelism sequence shares the attention heads among the devices: it needs a transformer whose "
          "heads "
          "divide evenly among the " +
              std::to_string(devices) + " devices, without zero_cond_t (edit models)");
  }
}

}  // namespace

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

MemoryPlan plan_memory(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                       const PlanRequest& request) {
  // A forced quantized preset is consent to its precision.
  Quality quality = request.quality;
  if (request.strategy == Strategy::Fp8 && quality == Quality::Lossless) quality = Quality::Fp8;
  if (request.strategy == Strategy::Nf4) quality = Quality::FourBit;
  const Parallelism parallelism = request.parallelism;
  if (machine.extra_pools.empty() && parallelism != Parallelism::Auto && parallelism != Parallelism::None) {
    throw Error("parallelism " + std::string(parallelism_name(parallelism)) +
                " needs several devices, but the plan has only " + machine.device.str() +
                " (name them with --devices, e.g. --devices 0,1)");
  }
  check_parallelism_applies(components, machine, parallelism);
  for (const DevicePool& pool : machine.pools()) {
    check(pool.budget > 0, "there is nothing left to plan with on " + pool.device.str() + ": its budget is " +
                               format_bytes(pool.budget) +
                               " once the backend's scratch reserve and the memory already in use are taken "
                               "off (raise --vram-budget, or free device memory)");
  }

  std::optional<MemoryPlan> plan = best_plan(components, machine, request.strategy, quality, parallelism);
  if (!plan) {
    MachineFacts roomy_host = machine;
    roomy_host.host_budget = std::numeric_limits<int64_t>::max() / 4;
    if (std::optional<MemoryPlan> host_bound =
            best_plan(components, roomy_host, request.strategy, quality, parallelism)) {
      throw Error("strategy " + std::string(strategy_name(request.strategy)) + " needs " +
                  format_bytes(host_bound->host_copy_bytes) +
                  " of host memory for its converted or quantized copies of the weights, but the host budget "
                  "is " +
                  format_bytes(machine.host_budget) +
                  " (free host memory, raise --ram-budget, or use a lossless plan of a checkpoint stored in "
                  "the compute dtype, which needs no copies)");
    }
    std::string what = "strategy " + std::string(strategy_name(request.strategy));
    if (!machine.extra_pools.empty())
      what += " with parallelism " + std::string(parallelism_name(parallelism));
    const std::string needed =
        format_bytes(bytes_needed(components, machine, request.strategy, quality, parallelism));
    std::string message =
        machine.extra_pools.empty()
            ? what + " needs " + needed + " on " + machine.device.str() + " but the budget is " +
                  format_bytes(machine.device_budget)
            : what + " needs " + needed + " on its fullest device but the budgets are " + pools_text(machine);
    // Lossless presets first: a suggestion should not lower the quality unasked.
    std::string fits;
    for (Strategy other : {Strategy::ModelOffload, Strategy::SequentialOffload, Strategy::Bf16Full,
                           Strategy::Fp8, Strategy::Nf4}) {
      if (other != request.strategy && best_plan(components, machine, other, quality, parallelism)) {
        fits = std::string(strategy_name(other));
        break;
      }
    }
    message += fits.empty() ? "; no strategy fits: the smallest plan (sequential_offload) needs " +
                                  format_bytes(bytes_needed(components, machine, Strategy::SequentialOffload,
                                                            Quality::Lossless, parallelism)) +
                                  " (lower the resolution, or free device memory)"
                            : "; --strategy " + fits + " fits (or use --strategy auto)";
    throw Error(message);
  }
  plan->strategy = request.strategy;
  plan->quality = quality;
  plan->parallelism = parallelism;
  plan->chosen = request.strategy == Strategy::Auto ? matching_preset(*plan) : request.strategy;
  return *plan;
}

MemoryPlan evaluate_plan(const std::vector<ComponentFacts>& components, const MachineFacts& machine,
                         const MemoryPlan& layout) {
  check(layout.components.size() == components.size(), "evaluate_plan: the layout does not match the facts");
  std::vector<Layout> layouts;
  for (const ComponentPlan& part : layout.components) layouts.push_back(layout_of(part));
  MachineFacts unlimited = machine;
  unlimited.device_budget = unlimited.host_budget = std::numeric_limits<int64_t>::max() / 4;
  for (DevicePool& pool : unlimited.extra_pools) pool.budget = unlimited.device_budget;
  std::optional<MemoryPlan> evaluated = assemble(components, unlimited, layouts);
  check(evaluated.has_value(), "evaluate_plan: the layout cannot be arranged on these devices");
  MemoryPlan plan = *evaluated;
  plan.strategy = layout.strategy;
  plan.chosen = matching_preset(plan);
  plan.quality = layout.quality;
  plan.parallelism = layout.parallelism;
  plan.device_budget = layout.device_budget;
  plan.host_budget = layout.host_budget;
  const std::vector<DevicePool> pools = machine.pools();
  for (size_t p = 0; p < plan.pools.size() && p < pools.size(); ++p) plan.pools[p].budget = pools[p].budget;
  return plan;
}

}  // namespace canvas
