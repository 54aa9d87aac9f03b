#include "cli/lora_job.h"

#include <cstdio>
#include <filesystem>

#include "cli/job_inputs.h"
#include "util/error.h"
#include "util/file_type.h"

namespace canvas::cli {

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
