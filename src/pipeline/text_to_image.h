// Text-to-image with Qwen-Image (QwenImagePipeline.__call__): encode the prompt, denoise seeded noise with
// flow-matching Euler steps and true classifier-free guidance, decode with the VAE.
#pragma once

#include <string>
#include <vector>

#include "pipeline/job.h"
#include "pipeline/request.h"

namespace canvas {

struct TextToImageResult {
  Tensor image;    // [H, W, 3] f32 in [0, 1]: the reference's output_type="np"
  Tensor latents;  // packed latents after the last step: the reference's output_type="latent"
  bool used_cfg = false;
  std::string negative_prompt;          // what the unconditional pass encoded, when used_cfg
  int64_t prompt_truncated_tokens = 0;  // cut past max_sequence_length, as the reference cuts them
  PhaseTimings timings;
  MemoryPlan plan;                      // how the job held its weights, after any recovery
  std::vector<std::string> recoveries;  // each allocation failure recovered from, and the rung taken
  int64_t bytes_streamed = 0;           // transformer weights copied to the device during the job
};

// Checks the request, plans the job's memory as `options` say, and runs it. With a `cache`, the job
// takes over the weights an earlier job of the same shape left arranged, and leaves its own there.
TextToImageResult text_to_image(const QwenImageModel& model, const TextToImageRequest& request,
                                const MemoryOptions& options, const JobObservers& observers = {},
                                ArrangementCache* cache = nullptr);

// The key a text-to-image job's recoveries are remembered by (recovery_key for its geometry and prompt).
std::string recovery_key(const QwenImageModel& model, const TextToImageRequest& request,
                         const MemoryOptions& options);

// [H, W, 3] floats in [0, 1] to 8-bit RGB, rounding as the reference's numpy_to_pil does.
std::vector<uint8_t> image_to_rgb8(const Tensor& image);

}  // namespace canvas
