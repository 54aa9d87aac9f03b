#include "app/sampling_presets.h"

#include <cstdio>

#include "util/error.h"

namespace canvas::app {

const std::vector<SamplingPreset>& sampling_presets() {
  static const std::vector<SamplingPreset> presets = {{"lightning-4", 4, 1.0f, 3.0},
                                                      {"lightning-8", 8, 1.0f, 3.0}};
  return presets;
}

std::vector<std::string> sampling_preset_names() {
  std::vector<std::string> names;
  for (const SamplingPreset& preset : sampling_presets()) names.push_back(preset.name);
  return names;
}

std::string sampling_presets_description() {
  std::string description;
  for (const SamplingPreset& preset : sampling_presets()) {
    char line[160];
    std::snprintf(line, sizeof(line), "%s%s: %d steps, --cfg-scale %g, --scheduler-shift %g",
                  description.empty() ? "" : "; ", preset.name.c_str(), preset.steps,
                  static_cast<double>(preset.cfg_scale), preset.scheduler_shift);
    description += line;
  }
  return description;
}

const SamplingPreset& sampling_preset(const std::string& name) {
  std::string choices;
  for (const SamplingPreset& preset : sampling_presets()) {
    if (preset.name == name) return preset;
    choices += (choices.empty() ? "" : ", ") + preset.name;
  }
  throw Error("unknown preset '" + name + "': choose " + choices);
}

}  // namespace canvas::app
