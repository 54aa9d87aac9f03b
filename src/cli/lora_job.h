// What the job commands add for LoRAs: checks of the files before any weight loads, and the summary line.
#pragma once

#include <string>
#include <vector>

#include "pipeline/generation_metadata.h"

namespace canvas::cli {

// Refuses, before anything loads, a --lora that names no file or something other than a file, or a path
// the image's metadata could not record.
void check_lora_files(const std::vector<LoraChoice>& loras);

// One line on what the LoRAs did, e.g. "LoRA: a.safetensors x0.8, b.safetensors x1 on 34 layers (34 merged
// into the weights)".
std::string lora_summary_line(const std::vector<LoraChoice>& loras, const JobResult& result);

}  // namespace canvas::cli
