// Editing pictures with Qwen-Image-Edit (QwenImageEditPlusPipeline.__call__, and the older single-picture
// QwenImageEditPipeline): the pictures go through the vision tower into the prompt, and through the VAE
// into reference latents that follow the noise in every transformer pass; the output is denoised and
// decoded as in text-to-image.
#pragma once

#include <string>

#include "pipeline/job.h"
#include "pipeline/request.h"

namespace canvas {

// Checks the request, plans the job's memory as `options` say, and runs it. With a `cache`, the job takes
// over the weights an earlier job of the same shape left arranged, and leaves its own there.
JobResult image_edit(const QwenImageModel& model, const ImageEditRequest& request,
                     const MemoryOptions& options, const JobObservers& observers = {},
                     ArrangementCache* cache = nullptr);

// The key an edit job's recoveries are remembered by (recovery_key for its geometry and prompt).
std::string recovery_key(const QwenImageModel& model, const ImageEditRequest& request,
                         const MemoryOptions& options);

}  // namespace canvas
