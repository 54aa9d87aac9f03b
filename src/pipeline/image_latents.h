// The latents of an input picture for img2img and inpainting (diffusers' QwenImageImg2ImgPipeline,
// QwenImageInpaintPipeline, QwenImageEditInpaintPipeline): the VAE posterior sampled with the job's
// generator, and the mask brought onto the packed latent grid and blended after every step.
// tests/golden/inpaint/README.md gives the pipelines' full order of operations.
#pragma once

#include <cstdint>

#include "models/autoencoder_kl_qwen_image.h"
#include "pipeline/torch_generator.h"
#include "tensor/tensor.h"

namespace canvas {

// DiagonalGaussianDistribution.sample(generator): mean + exp(0.5 * logvar) * draw, each operation rounded in
// the posterior's dtype, on its device. The draw is generator.randn of mean's element count (the reference
// draws [B, z, 1, h, w]: the same values in the same order), made on the host in f32 and cast (with 16
// latent channels every draw is a multiple of 16 values, where torch's bf16 draw is the f32 one rounded).
// The pipelines draw it before the noise, from the same generator.
Tensor sample_latent_distribution(const QwenImageLatentDistribution& posterior, TorchGenerator& generator);

// torch.nn.functional.interpolate(x, size=(height, width)) in its default mode "nearest", for a host F32
// [B, C, H, W]: output row i reads row min(floor(i * (float)H / height), H - 1), columns alike.
Tensor interpolate_nearest(const Tensor& x, int64_t height, int64_t width);

// prepare_mask_latents: the processed pixel mask [1, 1, H, W] (vae_image_processor::preprocess_mask) taken
// to the latent grid by interpolate_nearest, repeated over the latent channels and packed like the latents:
// [1, (h / 2) * (w / 2), 4 * latent_channels] host F32 of 0 and 1.
Tensor pack_mask_latents(const Tensor& mask_condition, int64_t latent_height, int64_t latent_width,
                         int64_t latent_channels);

// The inpainting pipelines' blend after each step: (1 - mask) * image_latents + mask * latents, each
// operation rounded in the latents' dtype, on their device (mask, image_latents and latents share shape,
// dtype and device). `image_latents` is scale_noise(x0, next step, noise), or x0 itself after the last step.
// With the binarized mask it keeps the picture where the mask is 0 and the denoised latents where it is 1.
Tensor blend_masked_latents(const Tensor& mask, const Tensor& image_latents, const Tensor& latents);

}  // namespace canvas
