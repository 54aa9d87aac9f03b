#include "pipeline/job_geometry.h"

namespace canvas {

JobGeometry job_geometry(const QwenImageConfigs& configs, const TextToImageRequest& request) {
  JobGeometry geometry;
  geometry.width = request.width;
  geometry.height = request.height;
  geometry.latent_channels = configs.latent_channels();
  // The reference's 2 * (size // (vae_scale_factor * 2)): whole 2x2 patches.
  const int64_t scale = configs.vae_scale_factor();
  geometry.latent_height = 2 * (request.height / (scale * 2));
  geometry.latent_width = 2 * (request.width / (scale * 2));
  geometry.img_shapes = {{1, geometry.latent_height / 2, geometry.latent_width / 2}};
  geometry.steps = request.steps;
  geometry.max_sequence_length = request.max_sequence_length;
  geometry.guided = request.cfg_scale > 1.0f;
  if (geometry.guided) geometry.negative_prompt = request.negative_prompt.value_or(" ");
  return geometry;
}

}  // namespace canvas
