#include "app/prepared_job.h"

#include <algorithm>
#include <memory>

#include "image/mask.h"
#include "pipeline/image_edit.h"
#include "pipeline/img2img.h"
#include "pipeline/job_geometry.h"
#include "pipeline/text_to_image.h"

namespace canvas::app {

namespace {

// `sampling` as a job of `geometry` runs it, for the metadata: with the working size it worked out and the
// prompt length it applies (0 where, as in the edit pipelines, the whole prompt is encoded).
TextToImageRequest settings_as_run(const SamplingSettings& sampling, const JobGeometry& geometry) {
  TextToImageRequest recorded;
  recorded.sampling = sampling;
  recorded.width = geometry.width;
  recorded.height = geometry.height;
  recorded.max_sequence_length = geometry.max_sequence_length;
  return recorded;
}

// Sets `job`'s recovery key and run to those of `request` run through `pipeline` (text_to_image,
// image_edit or image_to_image), each image with its own seed.
template <typename Request, typename Pipeline>
void run_request(PreparedJob& job, Request request, Pipeline pipeline) {
  auto shared = std::make_shared<const Request>(std::move(request));
  job.recovery_key = [shared](const QwenImageModel& model, const MemoryOptions& memory) {
    return recovery_key(model, *shared, memory);
  };
  job.run = [shared, pipeline](const QwenImageModel& model, const MemoryOptions& memory,
                               const JobObservers& observers, uint64_t seed, ArrangementCache* cache) {
    Request each = *shared;
    each.sampling.seed = seed;
    return pipeline(model, each, memory, observers, cache);
  };
}

std::string text_positions_name(TextPositions positions) {
  return positions == TextPositions::Sequential ? "sequential" : "mrope";
}

InputPicture input_picture(const InputImage& image) {
  return {image.name, image.decoded.rgb.width, image.decoded.rgb.height, image.sha256};
}

// The picture's pixels without its text chunks: a job's metadata never carries an input's.
RgbImage pixels_of(const InputImage& image) {
  RgbImage rgb = image.decoded.rgb;
  rgb.text.clear();
  return rgb;
}

std::string size_text(int64_t width, int64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

void prepare_text_to_image(const JobSpec& spec, const QwenImageConfigs& configs, PreparedJob& job) {
  TextToImageRequest request;
  request.sampling = spec.sampling;
  request.width = spec.width.value_or(request.width);
  request.height = spec.height.value_or(request.height);
  validate_request(request, configs);
  job.task = "text-to-image";
  job.settings = request;
  run_request(job, std::move(request), text_to_image);
}

void prepare_edit(const JobSpec& spec, const QwenImageConfigs& configs, PreparedJob& job) {
  ImageEditRequest request;
  request.sampling = spec.sampling;
  request.width = spec.width;
  request.height = spec.height;
  request.text_positions = spec.text_positions;
  for (const InputImage& image : spec.images) request.images.push_back(pixels_of(image));
  job.task = "edit";
  job.task_settings = {{"text_positions", text_positions_name(spec.text_positions)}};
  if (!spec.sampling.negative_prompt && spec.sampling.cfg_scale > 1.0f) {
    job.notes.push_back(
        "no guidance: the edit pipelines guide only with a negative prompt (give the negative prompt \" \" "
        "to guide at CFG scale " +
        std::to_string(spec.sampling.cfg_scale) + ")");
  }
  validate_request(request, configs);
  job.settings = settings_as_run(request.sampling, job_geometry(configs, request));
  run_request(job, std::move(request), image_edit);
}

// img2img, inpainting, outpainting and edit-inpainting: which one runs depends on the mask, the margins
// and the model.
void prepare_image_to_image(const JobSpec& spec, const QwenImageConfigs& configs, PreparedJob& job) {
  ImageToImageRequest request;
  request.sampling = spec.sampling;
  request.outpaint = spec.outpaint;
  request.strength = spec.strength.value_or(request.outpaint ? 1.0 : request.strength);
  request.width = spec.width;
  request.height = spec.height;
  request.padding_mask_crop = spec.padding_mask_crop;
  request.mask_blur = spec.mask_blur;
  request.invert_mask = spec.invert_mask;
  request.text_positions = spec.text_positions;
  check(spec.images.size() == 1, "img2img and inpainting take one picture");
  const InputImage& picture = spec.images.front();
  request.image = pixels_of(picture);
  if (spec.mask) request.mask = spec.mask_alpha ? mask_from_alpha(spec.mask->decoded) : pixels_of(*spec.mask);
  if (spec.mask_from_alpha) request.mask = mask_from_alpha(picture.decoded);
  const bool inpaints = request.mask.has_value();
  check(spec.task != JobTask::Inpaint || inpaints || request.outpaint,
        "inpainting needs a mask, the mask from the picture's alpha, or outpaint margins");
  if (inpaints &&
      (request.mask->width != request.image.width || request.mask->height != request.image.height) &&
      !request.padding_mask_crop) {
    job.notes.push_back("the mask (" + size_text(request.mask->width, request.mask->height) +
                        ") is not the picture's size (" +
                        size_text(request.image.width, request.image.height) +
                        "): it is stretched to the working size, as the reference does");
  }
  if (inpaints && !request.invert_mask &&
      std::ranges::all_of(to_grey(*request.mask).pixels, [](uint8_t v) { return v == 0; })) {
    job.notes.push_back("the mask is black all over: nothing is repainted (the picture comes back)");
  }
  job.inputs.push_back(input_picture(picture));
  if (spec.mask) job.inputs.push_back(input_picture(*spec.mask));
  job.task_settings = {{"strength", request.strength}};
  if (inpaints) {
    job.task_settings["mask_blur"] = request.mask_blur;
    job.task_settings["invert_mask"] = request.invert_mask;
    job.task_settings["mask_from_alpha"] = spec.mask_from_alpha;
    if (spec.mask_alpha) job.task_settings["mask_alpha"] = true;
    if (request.padding_mask_crop) job.task_settings["padding_mask_crop"] = *request.padding_mask_crop;
  }
  job.task = configs.edits()    ? "edit-inpaint"
             : request.outpaint ? "outpaint"
             : inpaints         ? "inpaint"
                                : "img2img";
  if (configs.edits()) job.task_settings["text_positions"] = text_positions_name(request.text_positions);
  validate_request(request, configs);
  const ImageToImageRequest working = outpainted_request(request, configs);
  if (request.outpaint) {
    // Margins grow so that the canvas is a multiple of the model's pixel multiple and the picture comes
    // back unresized.
    const OutpaintMargins asked = *request.outpaint;
    const OutpaintMargins margins =
        aligned_margins(asked, request.image.width, request.image.height, configs.pixel_multiple());
    job.task_settings["outpaint"] = {margins.left, margins.top, margins.right, margins.bottom};
    if (!(margins == asked)) {
      job.notes.push_back("the outpaint margins grow to " + std::to_string(margins.left) + "," +
                          std::to_string(margins.top) + "," + std::to_string(margins.right) + "," +
                          std::to_string(margins.bottom) + " so that the canvas (" +
                          size_text(working.image.width, working.image.height) + ") is a multiple of " +
                          std::to_string(configs.pixel_multiple()) +
                          " pixels a side and the picture comes back unresized");
    }
  }
  const JobGeometry geometry = job_geometry(configs, working);
  process_pictures(working, geometry);  // e.g. an empty mask has no region to crop around
  job.settings = settings_as_run(request.sampling, geometry);
  run_request(job, std::move(request), image_to_image);
}

}  // namespace

PreparedJob prepare_job(const JobSpec& spec, const QwenImageConfigs& configs) {
  PreparedJob job;
  switch (spec.task) {
    case JobTask::Generate:
      prepare_text_to_image(spec, configs, job);
      break;
    case JobTask::Edit:
      for (const InputImage& image : spec.images) job.inputs.push_back(input_picture(image));
      prepare_edit(spec, configs, job);
      break;
    case JobTask::Img2Img:
    case JobTask::Inpaint:
      prepare_image_to_image(spec, configs, job);
      break;
  }
  return job;
}

MemoryOptions job_memory_options(const JobSpec& spec) {
  MemoryOptions memory;
  memory.plan.strategy = parse_strategy(spec.strategy);
  memory.plan.quality = parse_quality(spec.quality);
  memory.lora_apply = spec.lora_apply;
  return memory;
}

RgbImage generated_image(const GenerationRecord& record) {
  const Tensor& pixels = record.result->image;
  RgbImage image;
  image.height = pixels.dim(0);
  image.width = pixels.dim(1);
  image.pixels = image_to_rgb8(pixels);
  image.text = generation_text_chunks(record);
  return image;
}

}  // namespace canvas::app
