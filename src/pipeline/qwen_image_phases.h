// The phases Qwen-Image's pipelines are made of, each the body of one JobPhaseStep: (for an edit) encode the
// pictures with the vision tower and the VAE, encode the prompts, denoise, decode. Each runs its work as
// attempts under the job's recovery ladder, on the job's weight arrangement, and checks what it hands on is
// finite.
#pragma once

#include <string>
#include <vector>

#include "models/qwen2_5_vl_model.h"
#include "pipeline/job.h"
#include "pipeline/prompt_encoder.h"

namespace canvas {

struct PromptEmbeddings {
  PromptEmbedding positive;
  PromptEmbedding negative;  // the job's negative prompt, when guided
};

// The text encoder's phase: `prompt`, and the job's negative prompt when guided. An edit job's prompts
// carry its pictures' vision embeddings (from encode_pictures).
PromptEmbeddings encode_prompts(Job& job, const std::string& prompt,
                                const Qwen2_5_VLImageEmbeds* pictures = nullptr);

// The vision encoder's phase: each picture resized (Lanczos) to its condition size, through the image
// processor and the vision tower, once for both guidance halves.
Qwen2_5_VLImageEmbeds encode_pictures(Job& job, const std::vector<RgbImage>& pictures);

// The VAE's encoding phase: each picture resized (Lanczos) to its VAE size, encoded to its posterior's mode,
// normalized and packed; all of them concatenated along the tokens, [1, reference tokens, 4 * z_dim], in
// the activation dtype on the model's device.
Tensor encode_reference_latents(Job& job, const std::vector<RgbImage>& pictures);

// The transformer's phase: seeded noise denoised over the job's steps with flow-matching Euler steps and,
// when guided, true classifier-free guidance at `cfg_scale` with the norm rescale. `reference_latents`
// (an edit's, else undefined) follow the noise in every pass, and their predictions are dropped. Returns
// the packed latents after the last step.
Tensor denoise(Job& job, const PromptEmbeddings& prompts, uint64_t seed, float cfg_scale,
               const Tensor& reference_latents = {});

// The VAE's phase: packed latents to an [H, W, 3] f32 image in [0, 1] (the reference's output_type="np").
Tensor decode_latents(Job& job, const Tensor& latents);

}  // namespace canvas
