#include "pipeline/job_geometry.h"

#include <cmath>

#include "pipeline/flow_match_scheduler.h"

namespace canvas {

namespace {

std::string size_text(PixelSize size) {
  return std::to_string(size.width) + "x" + std::to_string(size.height);
}

// A picture sized to `area`, refused when a side would round to nothing.
PixelSize picture_size(int64_t area, const RgbImage& image, size_t index) {
  const PixelSize size =
      calculate_dimensions(area, static_cast<double>(image.width) / static_cast<double>(image.height));
  check(size.width >= 32 && size.height >= 32 && size.width <= kMaxImageSide && size.height <= kMaxImageSide,
        "picture " + std::to_string(index + 1) + " (" + std::to_string(image.width) + "x" +
            std::to_string(image.height) + ") is too narrow for its aspect to be kept: at an area of " +
            std::to_string(area) + " pixels it would be sized to " + size_text(size) +
            ", and each side must be between 32 and " + std::to_string(kMaxImageSide) +
            "; crop it closer to square");
  return size;
}

// The steps and the schedule, which every job takes alike from its settings.
void set_schedule(JobGeometry& geometry, const QwenImageConfigs& configs, const SamplingSettings& sampling) {
  geometry.steps = sampling.steps;
  geometry.scheduler = job_scheduler(configs, sampling.scheduler_shift);
}

// Guidance as the text-to-image pipelines decide it: above scale 1, with " " when no negative prompt is
// given.
void guide_as_text_to_image(JobGeometry& geometry, const SamplingSettings& sampling) {
  geometry.guided = sampling.cfg_scale > 1.0f;
  if (geometry.guided) geometry.negative_prompt = sampling.negative_prompt.value_or(" ");
}

// Guidance as the edit pipelines decide it: above scale 1, and only with a negative prompt.
void guide_as_edit(JobGeometry& geometry, const SamplingSettings& sampling) {
  geometry.guided = sampling.cfg_scale > 1.0f && sampling.negative_prompt.has_value();
  if (geometry.guided) geometry.negative_prompt = *sampling.negative_prompt;
}

}  // namespace

PixelSize calculate_dimensions(int64_t target_area, double ratio) {
  const double width = std::sqrt(static_cast<double>(target_area) * ratio);
  const double height = width / ratio;
  // nearbyint rounds half to even in the default rounding mode, as Python's round does.
  return {static_cast<int64_t>(std::nearbyint(width / 32.0)) * 32,
          static_cast<int64_t>(std::nearbyint(height / 32.0)) * 32};
}

int64_t JobGeometry::sequence_image_tokens() const {
  int64_t tokens = 0;
  for (const ImageShape& shape : img_shapes) tokens += shape.tokens();
  return tokens;
}

JobGeometry job_geometry(const QwenImageConfigs& configs, const TextToImageRequest& request) {
  JobGeometry geometry;
  geometry.width = request.width;
  geometry.height = request.height;
  geometry.latent_channels = configs.latent_channels();
  // The reference's 2 * (size // (vae_scale_factor * 2)): whole 2x2 patches.
  const int64_t scale = configs.vae_scale_factor();
  geometry.latent_height = 2 * (request.height / (scale * 2));
  geometry.latent_width = 2 * (request.width / (scale * 2));
  geometry.img_shapes = {{1, geometry.latent_height / 2, geometry.latent_width / 2}};
  set_schedule(geometry, configs, request.sampling);
  geometry.max_sequence_length = request.max_sequence_length;
  guide_as_text_to_image(geometry, request.sampling);
  return geometry;
}

JobGeometry job_geometry(const QwenImageConfigs& configs, const ImageEditRequest& request) {
  check(configs.edits() && configs.image_processor,
        "the model is a text-to-image model (" + configs.layout.pipeline_class +
            "): editing needs Qwen-Image-Edit (QwenImageEditPipeline or QwenImageEditPlusPipeline)");
  check(!request.images.empty(), "an edit needs at least one picture");
  const bool plus = configs.kind == QwenImagePipelineKind::EditPlus;
  check(plus || request.images.size() == 1, "this model (" + configs.layout.pipeline_class +
                                                ") edits one picture; " +
                                                std::to_string(request.images.size()) +
                                                " were given (Qwen-Image-Edit-2509 and later take several)");
  check(request.images.size() <= kMaxEditImages, "an edit takes at most " + std::to_string(kMaxEditImages) +
                                                     " pictures, got " +
                                                     std::to_string(request.images.size()));
  const EditAreas& areas = request.areas;
  const int64_t max_area = kMaxImageSide * kMaxImageSide;
  check(areas.condition > 0 && areas.vae > 0 && areas.output > 0 && areas.condition <= max_area &&
            areas.vae <= max_area && areas.output <= max_area,
        "edit areas must be between 1 and " + std::to_string(max_area) + " pixels");

  JobGeometry geometry;
  geometry.kind = configs.kind;
  geometry.text_positions = request.text_positions;
  const Qwen2VLImageProcessorConfig& processor = *configs.image_processor;
  const int64_t grid_factor = processor.patch_size * processor.merge_size;
  for (size_t i = 0; i < request.images.size(); ++i) {
    const RgbImage& image = request.images[i];
    check(image.width > 0 && image.height > 0, "picture " + std::to_string(i + 1) + " is empty");
    ReferencePicture picture;
    // The older pipeline resizes its picture once, to the output area, for the processor and the VAE.
    picture.condition = picture_size(plus ? areas.condition : areas.output, image, i);
    picture.vae = plus ? picture_size(areas.vae, image, i) : picture.condition;
    const ResizedSize grid = smart_resize(picture.condition.height, picture.condition.width, grid_factor,
                                          processor.min_pixels, processor.max_pixels);
    picture.grid_thw = {1, grid.height / processor.patch_size, grid.width / processor.patch_size};
    geometry.references.push_back(picture);
  }
  // The default size follows the last picture (the older pipeline: its one picture), then both sides are
  // floored to whole latent patches.
  const PixelSize default_size = picture_size(areas.output, request.images.back(), request.images.size() - 1);
  const int64_t multiple = configs.pixel_multiple();
  geometry.width = request.width.value_or(default_size.width) / multiple * multiple;
  geometry.height = request.height.value_or(default_size.height) / multiple * multiple;
  check(geometry.width >= multiple && geometry.height >= multiple && geometry.width <= kMaxImageSide &&
            geometry.height <= kMaxImageSide,
        "the output size must be between " + std::to_string(multiple) + " and " +
            std::to_string(kMaxImageSide) + " pixels a side, got " + std::to_string(geometry.width) + "x" +
            std::to_string(geometry.height));
  geometry.latent_channels = configs.latent_channels();
  const int64_t scale = configs.vae_scale_factor();
  geometry.latent_height = 2 * (geometry.height / (scale * 2));
  geometry.latent_width = 2 * (geometry.width / (scale * 2));
  geometry.img_shapes = {{1, geometry.latent_height / 2, geometry.latent_width / 2}};
  for (const ReferencePicture& picture : geometry.references)
    geometry.img_shapes.push_back({1, picture.vae.height / scale / 2, picture.vae.width / scale / 2});
  set_schedule(geometry, configs, request.sampling);
  // The edit pipelines encode the whole prompt: max_sequence_length is not applied.
  geometry.max_sequence_length = 0;
  guide_as_edit(geometry, request.sampling);
  return geometry;
}

JobGeometry job_geometry(const QwenImageConfigs& configs, const ImageToImageRequest& request) {
  const RgbImage& image = request.image;
  check(image.width > 0 && image.height > 0, "the picture is empty");
  JobGeometry geometry;
  const int64_t multiple = configs.pixel_multiple();
  PixelSize size{request.width.value_or(image.width), request.height.value_or(image.height)};
  if (configs.edits()) {
    check(configs.image_processor.has_value(), "the edit model has no image processor config");
    size = picture_size(request.edit_area, image, 0);
    // QwenImageEditInpaintPipeline's prompt takes the legacy template, whatever the model's pipeline.
    geometry.kind = QwenImagePipelineKind::Edit;
    geometry.text_positions = request.text_positions;
    const Qwen2VLImageProcessorConfig& processor = *configs.image_processor;
    const ResizedSize grid =
        smart_resize(size.height, size.width, processor.patch_size * processor.merge_size,
                     processor.min_pixels, processor.max_pixels);
    geometry.references.push_back(
        {size, {1, grid.height / processor.patch_size, grid.width / processor.patch_size}, size});
  }
  geometry.width = size.width / multiple * multiple;
  geometry.height = size.height / multiple * multiple;
  check(geometry.width >= multiple && geometry.height >= multiple && geometry.width <= kMaxImageSide &&
            geometry.height <= kMaxImageSide,
        "the working size must be between " + std::to_string(multiple) + " and " +
            std::to_string(kMaxImageSide) + " pixels a side, got " + std::to_string(geometry.width) + "x" +
            std::to_string(geometry.height) + " (from " + size_text(size) + ")");
  geometry.latent_channels = configs.latent_channels();
  const int64_t scale = configs.vae_scale_factor();
  geometry.latent_height = 2 * (geometry.height / (scale * 2));
  geometry.latent_width = 2 * (geometry.width / (scale * 2));
  const ImageShape output{1, geometry.latent_height / 2, geometry.latent_width / 2};
  geometry.img_shapes = {output};
  // Edit-inpainting's reference tokens are the source's latents, at the output's size.
  if (configs.edits()) geometry.img_shapes.push_back(output);
  set_schedule(geometry, configs, request.sampling);
  geometry.encodes_source = true;
  geometry.first_step =
      FlowMatchEulerDiscreteScheduler::first_step_for_strength(request.sampling.steps, request.strength);
  if (configs.edits()) {
    geometry.max_sequence_length = 0;  // the edit pipelines encode the whole prompt
    guide_as_edit(geometry, request.sampling);
  } else {
    geometry.max_sequence_length = request.max_sequence_length;
    guide_as_text_to_image(geometry, request.sampling);
  }
  return geometry;
}

}  // namespace canvas
