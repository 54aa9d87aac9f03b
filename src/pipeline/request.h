// What a user asks of a job (text-to-image, or editing pictures), and the checks it must pass against the
// model's configs before any weight is loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/png_image.h"
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

// The areas, in pixels, an edit pipeline sizes pictures to (keeping each one's aspect, sides multiples of
// 32): QwenImageEditPlusPipeline's CONDITION_IMAGE_SIZE for what the vision tower sees, VAE_IMAGE_SIZE for
// the reference latents, and the default output size. The older QwenImageEditPipeline sizes its one picture
// to `output` for both. Smaller areas make tiny test models fast; users keep the defaults.
struct EditAreas {
  int64_t condition = 384 * 384;
  int64_t vae = 1024 * 1024;
  int64_t output = 1024 * 1024;
};

struct ImageEditRequest {
  std::string prompt;
  // True classifier-free guidance runs only with a negative prompt and cfg_scale > 1, as in the reference
  // edit pipelines (which default to cfg_scale 4 and then run unguided without one).
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  // The output size; each defaults to the last picture's aspect at areas.output. Both are floored to
  // multiples of 16 as the reference does.
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  uint64_t seed = 0;
  std::vector<RgbImage> images;  // the pictures to edit or draw from, in the prompt's order
  EditAreas areas;
  TextPositions text_positions = TextPositions::MRope;
};

// Most pictures one edit takes: each lengthens the text and the transformer's sequences.
inline constexpr size_t kMaxEditImages = 8;

// Largest image side a job accepts: 4096 pixels keeps the rotary position tables (4096 entries in the
// reference) and the token count within what the models were built for.
inline constexpr int64_t kMaxImageSide = 4096;

// Checks a request against the model: sizes, steps (the scheduler's fewest included), guidance, prompt
// length. Throws canvas::Error with the reason.
void validate_request(const TextToImageRequest& request, const QwenImageConfigs& configs);
// Also checks the model edits, and the number and sizes of the pictures.
void validate_request(const ImageEditRequest& request, const QwenImageConfigs& configs);

}  // namespace canvas
