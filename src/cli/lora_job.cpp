#include "cli/lora_job.h"

#include <cstdio>
#include <filesystem>

#include "cli/job_inputs.h"
#include "util/error.h"
#include "util/file_type.h"

namespace canvas::cli {

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

void check_lora_files(const std::vector<LoraChoice>& loras) {
  namespace fs = std::filesystem;
  for (const LoraChoice& lora : loras) {
    check_utf8(lora.path.string(), "the --lora path");
    std::error_code ignored;
    const fs::file_type type = fs::status(lora.path, ignored).type();
    check(type != fs::file_type::not_found, "--lora: there is no file " + lora.path.string());
    check(type == fs::file_type::regular,
          "--lora names " + file_type_description(type) + ", not a LoRA file: " + lora.path.string());
  }
}

LoraRecordsInBackground::LoraRecordsInBackground(std::vector<AppliedLora> loras)
    : records_(std::async(std::launch::async, [this, loras = std::move(loras)] {
        std::vector<LoraRecord> records;
        for (const AppliedLora& lora : loras) records.push_back(lora_record(lora, stop_));
        return records;
      })) {}

LoraRecordsInBackground::~LoraRecordsInBackground() {
  // The future's destructor waits for the thread, which now stops at its next piece of file.
  stop_.request();
}

std::vector<LoraRecord> LoraRecordsInBackground::get() {
  return records_.get();
}

std::string lora_summary_line(const std::vector<LoraChoice>& loras, const JobResult& result) {
  std::string line = "LoRA: ";
  for (size_t i = 0; i < loras.size(); ++i) {
    char strength[32];
    std::snprintf(strength, sizeof(strength), " x%g", static_cast<double>(loras[i].strength));
    line += (i > 0 ? ", " : "") + loras[i].path.filename().string() + strength;
  }
  const int layers = result.lora_layers, merged = result.lora_layers_merged;
  line += " on " + std::to_string(layers) + (layers == 1 ? " layer" : " layers");
  if (merged == 0) return line + " (computed beside the weights)";
  line += " (" + std::to_string(merged) + " merged into the weights";
  if (merged < layers) line += ", " + std::to_string(layers - merged) + " computed beside them";
  return line + ")";
}

}  // namespace canvas::cli
