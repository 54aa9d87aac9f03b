#include "planning/plan_candidates.h"

namespace canvas::planning {

namespace {

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

Layout spread_layout(Layout layout, Spread spread) {
  layout.spread = spread;
  return layout;
}

std::vector<Layout> uniform(size_t count, Residency residency, int resident_blocks) {
  return std::vector<Layout>(count, Layout(residency, WeightPrecision::Lossless, resident_blocks));
}

}  // namespace

std::vector<std::vector<Layout>> strategy_layouts(const std::vector<ComponentFacts>& components,
                                                  const MachineFacts& machine, Strategy strategy,
                                                  Quality quality) {
  const size_t n = components.size();
  auto with_transformer_precision = [&](std::vector<Layout> layouts, WeightPrecision precision, int blocks) {
    for (size_t i = 0; i < n; ++i) {
      if (components[i].quantizable) layouts[i] = Layout(layouts[i].residency, precision, blocks);
    }
    return layouts;
  };
  switch (strategy) {
    case Strategy::Bf16Full:
      return {uniform(n, Residency::Resident, kAllBlocks)};
    case Strategy::ModelOffload:
      return {uniform(n, Residency::Offloaded, kAllBlocks)};
    case Strategy::SequentialOffload:
      return {uniform(n, Residency::Offloaded, 0)};
    case Strategy::Fp8:
    case Strategy::Nf4: {
      WeightPrecision precision = strategy == Strategy::Fp8 ? WeightPrecision::Fp8 : WeightPrecision::Nf4;
      return {
          with_transformer_precision(uniform(n, Residency::Resident, kAllBlocks), precision, kAllBlocks),
          with_transformer_precision(uniform(n, Residency::Offloaded, kAsManyAsFit), precision, kAllBlocks)};
    }
    case Strategy::Auto:
      break;
  }
  std::vector<std::vector<Layout>> all;
  if (machine.device_is_host && machine.extra_pools.empty())
    all.push_back(uniform(n, Residency::Mapped, kAllBlocks));
  for (WeightPrecision precision : {WeightPrecision::Lossless, WeightPrecision::Fp8, WeightPrecision::Nf4}) {
    if (!precision_allowed(precision, quality)) continue;
    all.push_back(
        with_transformer_precision(uniform(n, Residency::Resident, kAllBlocks), precision, kAllBlocks));
    all.push_back(
        with_transformer_precision(uniform(n, Residency::Offloaded, kAsManyAsFit), precision, kAsManyAsFit));
  }
  return all;
}

std::vector<std::vector<Layout>> device_layouts(const std::vector<ComponentFacts>& components,
                                                const std::vector<Layout>& base, int pools,
                                                Parallelism parallelism) {
  std::vector<std::vector<Layout>> all;
  if (pools == 1 || parallelism == Parallelism::None || parallelism == Parallelism::Auto) all.push_back(base);
  if (pools == 1 || parallelism == Parallelism::None) return all;
  const size_t n = components.size();
  // Each component's choices: every pool alone, and the spreads its facts allow.
  std::vector<std::vector<Layout>> choices(n);
  for (size_t i = 0; i < n; ++i) {
    const ComponentFacts& facts = components[i];
    for (int pool = 0; pool < pools; ++pool) {
      Layout one = base[i];
      one.pool = pool;
      choices[i].push_back(one);
    }
    if (base[i].residency == Residency::Mapped) continue;
    auto allows = [&](Parallelism way) { return parallelism == Parallelism::Auto || parallelism == way; };
    if (facts.pipeline_splittable && static_cast<int>(facts.blocks.size()) >= pools &&
        allows(Parallelism::Pipeline)) {
      choices[i].push_back(spread_layout(base[i], Spread::Pipeline));
    }
    if (facts.attention_heads > 0 && allows(Parallelism::Sequence))
      choices[i].push_back(spread_layout(base[i], Spread::Sequence));
    // One guidance half per device: as many devices as passes that share a read of the weights.
    if (facts.passes_per_weight_read == pools && allows(Parallelism::Guidance))
      choices[i].push_back(spread_layout(base[i], Spread::Guidance));
  }
  std::vector<size_t> pick(n, 0);
  while (true) {
    std::vector<Layout> layouts;
    bool spread = false, several_pools = false;
    for (size_t i = 0; i < n; ++i) {
      layouts.push_back(choices[i][pick[i]]);
      spread |= layouts.back().spread != Spread::One;
      several_pools |= layouts.back().pool != layouts.front().pool;
    }
    const bool wanted = parallelism == Parallelism::Auto         ? (spread || several_pools)
                        : parallelism == Parallelism::Components ? (!spread && several_pools)
                                                                 : spread;
    if (wanted) all.push_back(std::move(layouts));
    size_t i = 0;
    while (i < n && ++pick[i] == choices[i].size()) pick[i++] = 0;
    if (i == n) break;
  }
  return all;
}

}  // namespace canvas::planning
