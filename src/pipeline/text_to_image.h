// Text-to-image with Qwen-Image (QwenImagePipeline.__call__): encode the prompt, denoise seeded noise with
// flow-matching Euler steps and true classifier-free guidance, decode with the VAE.
#pragma once

#include <string>
#include <vector>

#include "pipeline/job.h"
#include "pipeline/request.h"

namespace canvas {

// Checks the request, plans the job's memory as `options` say, and runs it. With a `cache`, the job
// takes over the weights an earlier job of the same shape left arranged, and leaves its own there.
JobResult text_to_image(const QwenImageModel& model, const TextToImageRequest& request,
                        const MemoryOptions& options, const JobObservers& observers = {},
                        ArrangementCache* cache = nullptr);

// The key a text-to-image job's recoveries are remembered by (recovery_key for its geometry and prompt).
std::string recovery_key(const QwenImageModel& model, const TextToImageRequest& request,
                         const MemoryOptions& options);

// [H, W, 3] floats in [0, 1] to 8-bit RGB, rounding as the reference's numpy_to_pil does.
std::vector<uint8_t> image_to_rgb8(const Tensor& image);

}  // namespace canvas
