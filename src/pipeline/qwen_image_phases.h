// The phases Qwen-Image's pipelines are made of, each the body of one JobPhaseStep: (for an edit) encode the
// pictures with the vision tower and the VAE (for img2img, the source picture with the VAE), encode the
// prompts, denoise, decode. Each runs its work as
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

// What img2img and inpainting start from: the source picture's latents and the noise, both packed
// [1, tokens, 4 * z_dim] in the activation dtype on the model's device.
struct SourceLatents {
  Tensor image_latents;  // x0: the VAE posterior sampled, normalized (by the inverse std) and packed
  Tensor noise;          // drawn after the posterior's sample, from the same generator
  Tensor mask;           // inpainting's packed 0/1 blend weights (1: repainted); undefined for img2img
};

// The VAE's encoding phase of img2img and inpainting: `picture` (vae_image_processor::preprocess's
// [1, 3, H, W] in [-1, 1] at the job's size) encoded, its posterior sampled with TorchGenerator(seed), then
// the noise drawn from the same generator, in the reference's order. The mask is left to the caller.
SourceLatents encode_source_latents(Job& job, const Tensor& picture, uint64_t seed);

// The transformer's phase: seeded noise denoised over the job's steps with flow-matching Euler steps and,
// when guided, true classifier-free guidance at `cfg_scale` with the norm rescale. `reference_latents`
// (an edit's, else undefined) follow the noise in every pass, and their predictions are dropped. With a
// `source` (img2img, inpainting) the loop starts at the geometry's first_step from scale_noise(x0, noise)
// instead (`seed` is then unused: the source holds the noise), and with its mask every step is followed by
// the inpainting blend towards x0 noised to the next step (x0 itself after the last). Returns the packed
// latents after the last step.
Tensor denoise(Job& job, const PromptEmbeddings& prompts, uint64_t seed, float cfg_scale,
               const Tensor& reference_latents = {}, const SourceLatents* source = nullptr);

// The VAE's phase: packed latents to an [H, W, 3] f32 image in [0, 1] (the reference's output_type="np").
Tensor decode_latents(Job& job, const Tensor& latents);

}  // namespace canvas
