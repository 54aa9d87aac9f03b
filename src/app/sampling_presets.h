// The sampling presets of distilled LoRAs (`--preset`, the API's "preset").
#pragma once

#include <string>
#include <vector>

namespace canvas::app {

// How a distilled LoRA is sampled: `--preset NAME` (the API's "preset") sets these unless the user gives
// them.
struct SamplingPreset {
  std::string name;
  int steps = 0;
  float cfg_scale = 1.0f;
  double scheduler_shift = 1.0;
};

// lightning-4 and lightning-8: the Qwen-Image-Lightning recipe (4 or 8 steps, no CFG, a fixed shift of 3).
const std::vector<SamplingPreset>& sampling_presets();
std::vector<std::string> sampling_preset_names();
// "lightning-4: 4 steps, --cfg-scale 1, --scheduler-shift 3; lightning-8: ...", for the help.
std::string sampling_presets_description();
// Throws canvas::Error listing the names when there is no such preset.
const SamplingPreset& sampling_preset(const std::string& name);

}  // namespace canvas::app
