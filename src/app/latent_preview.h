// Live previews of a job: the denoising loop's estimate of the clean latents (pipeline/job.h's
// PreviewCallback) turned into a small RGB picture by a linear projection of each latent pixel, as
// ComfyUI's Latent2RGB previewer does, at no cost beside the step (no VAE decode).
//
// Qwen-Image's VAE is the Wan 2.1 VAE (16 channels, the same latents_mean / latents_std), and ComfyUI
// previews Qwen-Image with the Wan 2.1 latent format: comfy/supported_models.py's `class QwenImage` sets
// `latent_format = latent_formats.Wan21` (Comfy-Org/ComfyUI at 01f03bbdc7df9462d3fc4c0918f80049333450f3).
// ComfyUI's samplers hand the previewer x0 in the model's space, Wan21.process_in's
// (latent - mean) / std, which is the normalized space our pipelines denoise in.
#pragma once

#include <array>

#include "io/png_image.h"
#include "tensor/tensor.h"

namespace canvas::app {

inline constexpr int kPreviewLatentChannels = 16;

// ComfyUI's `Wan21.latent_rgb_factors` (comfy/latent_formats.py, Comfy-Org/ComfyUI at
// 75399d78ddcc01f46f9b94521b29f1fe8a90ed53): row c is latent channel c's contribution to (R, G, B).
// Data ComfyUI publishes, copied as printed there.
inline constexpr std::array<std::array<float, 3>, kPreviewLatentChannels> kWan21LatentRgbFactors{{
    {-0.1299f, -0.1692f, 0.2932f},
    {0.0671f, 0.0406f, 0.0442f},
    {0.3568f, 0.2548f, 0.1747f},
    {0.0372f, 0.2344f, 0.1420f},
    {0.0313f, 0.0189f, -0.0328f},
    {0.0296f, -0.0956f, -0.0665f},
    {-0.3477f, -0.4059f, -0.2925f},
    {0.0166f, 0.1902f, 0.1975f},
    {-0.0412f, 0.0267f, -0.1364f},
    {-0.1293f, 0.0740f, 0.1636f},
    {0.0680f, 0.3019f, 0.1128f},
    {0.0032f, 0.0581f, 0.0639f},
    {-0.1251f, 0.0927f, 0.1699f},
    {0.0060f, -0.0633f, 0.0005f},
    {0.3477f, 0.2275f, 0.2950f},
    {0.1984f, 0.0913f, 0.1861f},
}};
// ComfyUI's `Wan21.latent_rgb_factors_bias`, the same file.
inline constexpr std::array<float, 3> kWan21LatentRgbBias{-0.1835f, -0.0868f, -0.3360f};

// `denoised` [1, 16, h, w] (normalized Wan 2.1 latents, any dtype and device) to an h x w RGB picture (no
// text chunks). Each pixel is bias + sum over channels of latent * factor, in [-1, 1] nominally, turned into
// a byte as ComfyUI's preview_to_image does (latent_preview.py, Comfy-Org/ComfyUI at
// 2d619ed9d647511be7ffcab614d86aff75bf69a6): ((x + 1) / 2) clamped to [0, 1], times 255, truncated; a NaN
// gives 0. Throws canvas::Error for another shape.
RgbImage latent_preview(const Tensor& denoised);

}  // namespace canvas::app
