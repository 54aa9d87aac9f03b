#include "pipeline/text_to_image.h"

#include <cmath>

#include "pipeline/qwen_image_phases.h"

namespace canvas {

JobResult text_to_image(const QwenImageModel& model, const TextToImageRequest& request,
                        const MemoryOptions& options, const JobObservers& observers,
                        ArrangementCache* cache) {
  validate_request(request, model.configs);
  Job job(model, job_geometry(model.configs, request), request.sampling.prompt,
          job_loras(model, request.sampling.loras), options, observers, cache);
  PromptEmbeddings prompts;
  JobResult result;
  job.run({
      {JobPhase::Plan, [&] { job.arrange_weights(); }},
      {JobPhase::TextEncode, [&] { prompts = encode_prompts(job, request.sampling.prompt); }},
      {JobPhase::Denoise,
       [&] { result.latents = denoise(job, prompts, request.sampling.seed, request.sampling.cfg_scale); }},
      {JobPhase::VaeDecode, [&] { result.image = decode_latents(job, result.latents); }},
  });
  job.report(result);
  result.prompt_truncated_tokens = prompts.positive.truncated_tokens;
  return result;
}

std::string recovery_key(const QwenImageModel& model, const TextToImageRequest& request,
                         const MemoryOptions& options) {
  return recovery_key(model, job_geometry(model.configs, request), request.sampling.prompt, options);
}

std::vector<uint8_t> image_to_rgb8(const Tensor& image) {
  check(image.ndim() == 3 && image.dim(2) == 3,
        "image_to_rgb8 takes [H, W, 3], got " + shape_str(image.shape()));
  std::vector<float> values = image.to_floats();
  std::vector<uint8_t> pixels(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    // numpy's round() rounds half to even; nearbyint does the same in the default rounding mode.
    pixels[i] = static_cast<uint8_t>(std::nearbyint(std::clamp(values[i], 0.0f, 1.0f) * 255.0f));
  }
  return pixels;
}

}  // namespace canvas
