// Qwen-Image's 2x2 latent packing (QwenImagePipeline._pack_latents / _unpack_latents): the transformer
// sees each 2x2 patch of the 16-channel latent as one token of 64 channels, in (channel, dy, dx) order.
#pragma once

#include "tensor/tensor.h"

namespace canvas {

// [B, C, H, W] -> [B, (H/2)(W/2), 4C]
Tensor pack_latents(const Tensor& latents);
// [B, (H/2)(W/2), 4C] -> [B, C, H, W] for latent height H and width W.
Tensor unpack_latents(const Tensor& packed, int64_t latent_height, int64_t latent_width);

}  // namespace canvas
