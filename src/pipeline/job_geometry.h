// The sizes and switches of one job, worked out once from the request and the model's configs: what the
// phases, the planner's dry runs and the cache keys all read.
#pragma once

#include <string>
#include <vector>

#include "pipeline/request.h"

namespace canvas {

struct JobGeometry {
  int64_t width = 0;  // of the image, in pixels
  int64_t height = 0;
  int64_t latent_channels = 0;
  int64_t latent_height = 0;  // the VAE's latent grid
  int64_t latent_width = 0;
  std::vector<ImageShape> img_shapes;  // the transformer's token grid of each image: one, the output
  int steps = 0;
  int64_t max_sequence_length = 0;
  // True classifier-free guidance runs (cfg_scale > 1), with `negative_prompt` as the unconditional prompt:
  // the request's, or " " as the Qwen-Image examples use.
  bool guided = false;
  std::string negative_prompt;

  int64_t image_tokens() const { return img_shapes.front().tokens(); }
  // Passes of the transformer (and prompts through the text encoder) per step: 2 when guided.
  int guidance_halves() const { return guided ? 2 : 1; }
};

JobGeometry job_geometry(const QwenImageConfigs& configs, const TextToImageRequest& request);

}  // namespace canvas
