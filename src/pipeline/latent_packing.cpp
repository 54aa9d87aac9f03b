#include "pipeline/latent_packing.h"

#include "util/error.h"

namespace canvas {

Tensor pack_latents(const Tensor& latents) {
  check(latents.ndim() == 4 && latents.dim(2) % 2 == 0 && latents.dim(3) % 2 == 0,
        "pack_latents takes [B, C, H, W] with even H and W, got " + shape_str(latents.shape()));
  int64_t batch = latents.dim(0), channels = latents.dim(1), height = latents.dim(2), width = latents.dim(3);
  return latents.reshape({batch, channels, height / 2, 2, width / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({batch, (height / 2) * (width / 2), channels * 4});
}

Tensor unpack_latents(const Tensor& packed, int64_t latent_height, int64_t latent_width) {
  check(packed.ndim() == 3 && latent_height % 2 == 0 && latent_width % 2 == 0 &&
            packed.dim(1) == (latent_height / 2) * (latent_width / 2) && packed.dim(2) % 4 == 0,
        "unpack_latents: " + shape_str(packed.shape()) + " does not hold a " + std::to_string(latent_height) +
            "x" + std::to_string(latent_width) + " latent");
  int64_t batch = packed.dim(0), channels = packed.dim(2) / 4;
  return packed.reshape({batch, latent_height / 2, latent_width / 2, channels, 2, 2})
      .permute({0, 3, 1, 4, 2, 5})
      .reshape({batch, channels, latent_height, latent_width});
}

}  // namespace canvas
