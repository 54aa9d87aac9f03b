// The phases Qwen-Image's pipelines are made of, each the body of one JobPhaseStep: encode the prompts,
// denoise, decode. Each runs its work as attempts under the job's recovery ladder, on the job's weight
// arrangement, and checks what it hands on is finite.
#pragma once

#include <string>

#include "pipeline/job.h"
#include "pipeline/prompt_encoder.h"

namespace canvas {

struct PromptEmbeddings {
  PromptEmbedding positive;
  PromptEmbedding negative;  // the job's negative prompt, when guided
};

// The text encoder's phase: `prompt`, and the job's negative prompt when guided.
PromptEmbeddings encode_prompts(Job& job, const std::string& prompt);

// The transformer's phase: seeded noise denoised over the job's steps with flow-matching Euler steps and,
// when guided, true classifier-free guidance at `cfg_scale` with the norm rescale. Returns the packed
// latents after the last step.
Tensor denoise(Job& job, const PromptEmbeddings& prompts, uint64_t seed, float cfg_scale);

// The VAE's phase: packed latents to an [H, W, 3] f32 image in [0, 1] (the reference's output_type="np").
Tensor decode_latents(Job& job, const Tensor& latents);

}  // namespace canvas
