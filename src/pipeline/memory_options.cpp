#include "pipeline/memory_options.h"

#include "util/error.h"

namespace canvas {

std::string_view lora_apply_name(LoraApply apply) {
  return apply == LoraApply::Auto ? "auto" : "runtime";
}

LoraApply parse_lora_apply(std::string_view name) {
  if (name == "auto") return LoraApply::Auto;
  if (name == "runtime") return LoraApply::RunTime;
  throw Error("unknown LoRA application '" + std::string(name) + "': choose auto or runtime");
}

}  // namespace canvas
