// What a user asks of a text-to-image job, and the checks it must pass against the model's configs before
// any weight is loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "pipeline/qwen_image_model.h"

namespace canvas {

struct TextToImageRequest {
  std::string prompt;
  // With cfg_scale > 1 and no negative prompt, " " is used, as the Qwen-Image examples do.
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  int64_t width = 1024;
  int64_t height = 1024;
  uint64_t seed = 0;
  int64_t max_sequence_length = 512;
};

// Largest image side a job accepts: 4096 pixels keeps the rotary position tables (4096 entries in the
// reference) and the token count within what the models were built for.
inline constexpr int64_t kMaxImageSide = 4096;

// Checks a request against the model: sizes, steps (the scheduler's fewest included), guidance, prompt
// length. Throws canvas::Error with the reason.
void validate_request(const TextToImageRequest& request, const QwenImageConfigs& configs);

}  // namespace canvas
