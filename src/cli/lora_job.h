// What the job commands add for LoRAs: the sampling presets of the Lightning LoRAs, checks of the files
// before any weight loads, their records for the image hashed beside the job, and the summary line.
#pragma once

#include <future>
#include <string>
#include <vector>

#include "pipeline/generation_metadata.h"

namespace canvas::cli {

// How a distilled LoRA is sampled: `--preset NAME` sets these unless the user gives them.
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

// Refuses, before anything loads, a --lora that names no file or something other than a file, or a path
// the image's metadata could not record.
void check_lora_files(const std::vector<LoraChoice>& loras);

// The records of the job's LoRAs for the image. Hashing a large LoRA takes seconds, about as long as a
// Lightning job on a GPU, so it runs on a thread of its own beside loading and the job; a job that ends
// without the records (an error, a cancellation) stops it at once.
class LoraRecordsInBackground {
 public:
  explicit LoraRecordsInBackground(std::vector<AppliedLora> loras);
  ~LoraRecordsInBackground();
  LoraRecordsInBackground(const LoraRecordsInBackground&) = delete;
  LoraRecordsInBackground& operator=(const LoraRecordsInBackground&) = delete;

  // Waits for the hashing; throws canvas::Error when a file could not be read. Call once.
  std::vector<LoraRecord> get();

 private:
  Cancellation stop_;  // before records_: it must outlive the thread
  std::future<std::vector<LoraRecord>> records_;
};

// One line on what the LoRAs did, e.g. "LoRA: a.safetensors x0.8, b.safetensors x1 on 34 layers (34 merged
// into the weights)".
std::string lora_summary_line(const std::vector<LoraChoice>& loras, const JobResult& result);

}  // namespace canvas::cli
