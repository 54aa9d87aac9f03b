#include "pipeline/image_edit.h"

#include "pipeline/qwen_image_phases.h"

namespace canvas {

JobResult image_edit(const QwenImageModel& model, const ImageEditRequest& request,
                     const MemoryOptions& options, const JobObservers& observers, ArrangementCache* cache) {
  validate_request(request, model.configs);
  Job job(model, job_geometry(model.configs, request), request.sampling.prompt,
          job_loras(model, request.sampling.loras), options, observers, cache);
  Qwen2_5_VLImageEmbeds pictures;
  PromptEmbeddings prompts;
  Tensor reference_latents;
  JobResult result;
  job.run({
      {JobPhase::Plan, [&] { job.arrange_weights(); }},
      {JobPhase::VisionEncode, [&] { pictures = encode_pictures(job, request.images); }},
      {JobPhase::TextEncode, [&] { prompts = encode_prompts(job, request.sampling.prompt, &pictures); }},
      {JobPhase::VaeEncode, [&] { reference_latents = encode_reference_latents(job, request.images); }},
      {JobPhase::Denoise,
       [&] {
         result.latents =
             denoise(job, prompts, request.sampling.seed, request.sampling.cfg_scale, reference_latents);
       }},
      {JobPhase::VaeDecode, [&] { result.image = decode_latents(job, result.latents); }},
  });
  job.report(result);
  return result;
}

std::string recovery_key(const QwenImageModel& model, const ImageEditRequest& request,
                         const MemoryOptions& options) {
  return recovery_key(model, job_geometry(model.configs, request), request.sampling.prompt, options);
}

}  // namespace canvas
