#include "pipeline/request.h"

#include <cmath>

#include "pipeline/job_geometry.h"

namespace canvas {

namespace {

void validate_sampling(const SamplingSettings& sampling, const QwenImageConfigs& configs) {
  const int min_steps = job_scheduler(configs, sampling.scheduler_shift).min_steps();
  check(sampling.steps >= min_steps && sampling.steps <= 1000,
        "steps must be between " + std::to_string(min_steps) + " and 1000" +
            (min_steps > 1 ? " for this model (its scheduler sets shift_terminal)" : "") + ", got " +
            std::to_string(sampling.steps));
  check(std::isfinite(sampling.cfg_scale) && sampling.cfg_scale >= 0.0f && sampling.cfg_scale <= 100.0f,
        "cfg scale must be between 0 and 100");
}

std::string margins_text(const OutpaintMargins& margins) {
  return std::to_string(margins.left) + "," + std::to_string(margins.top) + "," +
         std::to_string(margins.right) + "," + std::to_string(margins.bottom);
}

// What only an outpainting request must satisfy; the inpainting request it turns into is checked as any.
void validate_outpaint(const ImageToImageRequest& request, const QwenImageConfigs& configs) {
  const OutpaintMargins& margins = *request.outpaint;
  for (int64_t margin : {margins.left, margins.top, margins.right, margins.bottom})
    check(margin >= 0 && margin <= kMaxImageSide, "outpainting margins must be between 0 and " +
                                                      std::to_string(kMaxImageSide) + " pixels, got " +
                                                      margins_text(margins));
  check(margins != OutpaintMargins{}, "outpainting needs at least one margin above 0");
  check(!configs.edits(), "outpainting needs a text-to-image model: edit-inpainting resizes the picture (" +
                              configs.layout.pipeline_class + "), so its pixels could not come back exactly");
  check(!request.mask && !request.padding_mask_crop && request.mask_blur == 0.0f && !request.invert_mask,
        "outpainting makes its own mask (white over the new area): give no mask, mask blur, inversion or "
        "padding_mask_crop");
  check(!request.width && !request.height,
        "outpainting works at the size of the grown canvas: give no width or height");
  const RgbImage& image = request.image;
  check(image.width > 0 && image.height > 0, "the picture is empty");
  const OutpaintMargins aligned =
      aligned_margins(margins, image.width, image.height, configs.pixel_multiple());
  const int64_t width = aligned.left + image.width + aligned.right;
  const int64_t height = aligned.top + image.height + aligned.bottom;
  check(width <= kMaxImageSide && height <= kMaxImageSide,
        "the outpainted canvas must be at most " + std::to_string(kMaxImageSide) + " pixels a side, got " +
            std::to_string(width) + "x" + std::to_string(height) + " (the " + std::to_string(image.width) +
            "x" + std::to_string(image.height) + " picture grown by " + margins_text(aligned) + ")");
}

}  // namespace

FlowMatchSchedulerConfig job_scheduler(const QwenImageConfigs& configs, std::optional<double> shift) {
  return shift ? configs.scheduler.with_fixed_shift(*shift) : configs.scheduler;
}

void validate_request(const TextToImageRequest& request, const QwenImageConfigs& configs) {
  const int64_t multiple = configs.pixel_multiple();
  check(request.width > 0 && request.height > 0 && request.width <= kMaxImageSide &&
            request.height <= kMaxImageSide,
        "width and height must be between " + std::to_string(multiple) + " and " +
            std::to_string(kMaxImageSide) + ", got " + std::to_string(request.width) + "x" +
            std::to_string(request.height));
  check(request.width % multiple == 0 && request.height % multiple == 0,
        "width and height must be multiples of " + std::to_string(multiple) + ", got " +
            std::to_string(request.width) + "x" + std::to_string(request.height) + " (try " +
            std::to_string(std::max<int64_t>(multiple, request.width / multiple * multiple)) + "x" +
            std::to_string(std::max<int64_t>(multiple, request.height / multiple * multiple)) + ")");
  validate_sampling(request.sampling, configs);
  check(request.max_sequence_length >= 1 && request.max_sequence_length <= 1024,
        "max sequence length must be between 1 and 1024");
}

void validate_request(const ImageEditRequest& request, const QwenImageConfigs& configs) {
  validate_sampling(request.sampling, configs);
  for (const std::optional<int64_t>& side : {request.width, request.height})
    check(!side || (*side > 0 && *side <= kMaxImageSide),
          "width and height must be between 1 and " + std::to_string(kMaxImageSide));
  job_geometry(configs, request);  // sizes every picture and the output, refusing what cannot be sized
}

void validate_request(const ImageToImageRequest& request, const QwenImageConfigs& configs) {
  if (request.outpaint) {
    validate_outpaint(request, configs);
    validate_request(outpainted_request(request, configs), configs);
    return;
  }
  validate_sampling(request.sampling, configs);
  check(request.max_sequence_length >= 1 && request.max_sequence_length <= 1024,
        "max sequence length must be between 1 and 1024");
  const RgbImage& image = request.image;
  check(image.width > 0 && image.height > 0 &&
            static_cast<int64_t>(image.pixels.size()) == image.width * image.height * 3,
        "the picture is empty or its pixels do not match its size");
  for (const std::optional<int64_t>& side : {request.width, request.height})
    check(!side || (*side > 0 && *side <= kMaxImageSide),
          "width and height must be between 1 and " + std::to_string(kMaxImageSide));
  if (request.mask) {
    check(request.mask->width > 0 && request.mask->height > 0 &&
              static_cast<int64_t>(request.mask->pixels.size()) ==
                  request.mask->width * request.mask->height * 3,
          "the mask is empty or its pixels do not match its size");
  }
  check(!request.padding_mask_crop || request.mask, "padding_mask_crop needs a mask");
  check(!request.padding_mask_crop || *request.padding_mask_crop >= 0,
        "padding_mask_crop must be 0 or more pixels");
  check(!request.padding_mask_crop ||
            (request.mask->width == image.width && request.mask->height == image.height),
        "with padding_mask_crop the mask must have the picture's size (" + std::to_string(image.width) + "x" +
            std::to_string(image.height) + "), got " +
            (request.mask ? std::to_string(request.mask->width) + "x" + std::to_string(request.mask->height)
                          : std::string()) +
            ": the region is cut from both and the result pasted back through the mask");
  check(std::isfinite(request.mask_blur) && request.mask_blur >= 0.0f, "the mask blur must be 0 or more");
  check(request.mask || (request.mask_blur == 0.0f && !request.invert_mask),
        "mask blur and inversion need a mask");
  if (configs.edits()) {
    check(request.mask.has_value(), "img2img without a mask needs a text-to-image model: on an edit model (" +
                                        configs.layout.pipeline_class +
                                        ") only edit-inpainting (with a mask) is available");
    check(!request.width && !request.height,
          "edit-inpainting sizes its output from the picture (as QwenImageEditInpaintPipeline does): give no "
          "width or height");
    check(!request.padding_mask_crop,
          "edit-inpainting does not take padding_mask_crop (the reference crops the resized picture with the "
          "region of the mask at its own size)");
    check(request.edit_area > 0 && request.edit_area <= kMaxImageSide * kMaxImageSide,
          "the edit area must be between 1 and " + std::to_string(kMaxImageSide * kMaxImageSide) + " pixels");
  }
  job_geometry(configs, request);  // sizes the output and cuts the schedule, refusing what cannot be run
}

ImageToImageRequest outpainted_request(const ImageToImageRequest& request, const QwenImageConfigs& configs) {
  if (!request.outpaint) return request;
  ImageToImageRequest outpainted = request;
  outpainted.outpaint.reset();
  const OutpaintMargins margins =
      aligned_margins(*request.outpaint, request.image.width, request.image.height, configs.pixel_multiple());
  outpainted.image = extend_canvas(request.image, margins);
  outpainted.mask = outpaint_mask(request.image, margins);
  outpainted.width = outpainted.image.width;
  outpainted.height = outpainted.image.height;
  return outpainted;
}

}  // namespace canvas
