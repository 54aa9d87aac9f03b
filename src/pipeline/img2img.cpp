#include "pipeline/img2img.h"

#include "image/mask.h"
#include "image/outpaint.h"
#include "pipeline/image_latents.h"
#include "pipeline/qwen_image_phases.h"
#include "pipeline/text_to_image.h"

namespace canvas {

namespace vip = vae_image_processor;

ProcessedPictures process_pictures(const ImageToImageRequest& request, const JobGeometry& geometry) {
  ProcessedPictures processed;
  // Edit-inpainting resizes the picture to its calculated size first; the VAE's resize is then a copy.
  processed.picture = geometry.references.empty()
                          ? request.image
                          : vip::resize(request.image, geometry.references.front().vae.width,
                                        geometry.references.front().vae.height, vip::ResizeMode::Default);
  processed.picture.text.clear();
  vip::ResizeMode mode = vip::ResizeMode::Default;
  if (request.mask) {
    processed.mask = request.invert_mask ? invert(*request.mask) : *request.mask;
    processed.mask.text.clear();
    if (request.mask_blur > 0.0f) processed.mask = gaussian_blur(processed.mask, request.mask_blur);
    if (request.padding_mask_crop) {
      processed.crop_region =
          vip::get_crop_region(processed.mask, geometry.width, geometry.height, *request.padding_mask_crop);
      mode = vip::ResizeMode::Fill;
    }
    const Tensor mask_condition =
        vip::preprocess_mask(processed.mask, geometry.width, geometry.height, mode, processed.crop_region);
    processed.packed_mask = pack_mask_latents(mask_condition, geometry.latent_height, geometry.latent_width,
                                              geometry.latent_channels);
  }
  processed.picture_tensor =
      vip::preprocess(processed.picture, geometry.width, geometry.height, mode, processed.crop_region);
  return processed;
}

namespace {

// A decoded image ([H, W, 3] in [0, 1]) as the 8-bit picture the PNG gets.
RgbImage rgb8_picture(const Tensor& image) {
  RgbImage picture;
  picture.height = image.dim(0);
  picture.width = image.dim(1);
  picture.pixels = image_to_rgb8(image);
  return picture;
}

// A picture as a decoded image: [H, W, 3] floats v / 255, which image_to_rgb8 turns back into v.
Tensor picture_image(const RgbImage& picture) {
  std::vector<float> values(picture.pixels.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(picture.pixels[i]) / 255.0f;
  return Tensor::from_floats(values, {picture.height, picture.width, 3});
}

// The reference's PIL output with padding_mask_crop: the decoded image to 8 bits, pasted into the picture
// through the mask.
Tensor overlaid_image(const ProcessedPictures& processed, const Tensor& image) {
  return picture_image(
      vip::apply_overlay(processed.mask, processed.picture, rgb8_picture(image), processed.crop_region));
}

// Outpainting's output: the decoded canvas with the source picture's own pixels pasted back, since the VAE
// round trip changes them slightly.
Tensor outpainted_image(const ImageToImageRequest& request, const QwenImageConfigs& configs,
                        const Tensor& image) {
  const OutpaintMargins margins =
      aligned_margins(*request.outpaint, request.image.width, request.image.height, configs.pixel_multiple());
  return picture_image(paste_picture(rgb8_picture(image), request.image, margins));
}

}  // namespace

JobResult image_to_image(const QwenImageModel& model, const ImageToImageRequest& request,
                         const MemoryOptions& options, const JobObservers& observers,
                         ArrangementCache* cache) {
  validate_request(request, model.configs);
  const ImageToImageRequest working = outpainted_request(request, model.configs);
  const JobGeometry geometry = job_geometry(model.configs, working);
  const ProcessedPictures processed = process_pictures(working, geometry);
  const bool edits = !geometry.references.empty();
  Job job(model, geometry, request.sampling.prompt, job_loras(model, request.sampling.loras), options,
          observers, cache);
  Qwen2_5_VLImageEmbeds pictures;
  PromptEmbeddings prompts;
  SourceLatents source;
  JobResult result;
  std::vector<JobPhaseStep> phases{{JobPhase::Plan, [&] { job.arrange_weights(); }}};
  if (edits)
    phases.push_back({JobPhase::VisionEncode, [&] { pictures = encode_pictures(job, {processed.picture}); }});
  phases.push_back({JobPhase::TextEncode, [&] {
                      prompts = encode_prompts(job, request.sampling.prompt, edits ? &pictures : nullptr);
                    }});
  phases.push_back({JobPhase::VaeEncode, [&] {
                      source = encode_source_latents(job, processed.picture_tensor, request.sampling.seed);
                      // Cast once to the latents' dtype and device, as the reference's prepare_mask_latents.
                      if (processed.packed_mask.defined())
                        source.mask = processed.packed_mask.to(model.activation_dtype).to(model.device);
                    }});
  phases.push_back({JobPhase::Denoise, [&] {
                      // Edit-inpainting's reference tokens are the source's latents.
                      result.latents =
                          denoise(job, prompts, request.sampling.seed, request.sampling.cfg_scale,
                                  edits ? source.image_latents : Tensor(), &source);
                    }});
  phases.push_back({JobPhase::VaeDecode, [&] {
                      result.image = decode_latents(job, result.latents);
                      if (processed.crop_region) result.image = overlaid_image(processed, result.image);
                      if (request.outpaint)
                        result.image = outpainted_image(request, model.configs, result.image);
                    }});
  job.run(phases);
  job.report(result);
  result.prompt_truncated_tokens = prompts.positive.truncated_tokens;
  return result;
}

std::string recovery_key(const QwenImageModel& model, const ImageToImageRequest& request,
                         const MemoryOptions& options) {
  return recovery_key(model, job_geometry(model.configs, outpainted_request(request, model.configs)),
                      request.sampling.prompt, options);
}

}  // namespace canvas
