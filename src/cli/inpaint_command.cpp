#include "cli/inpaint_command.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include "cli/job_inputs.h"
#include "image/decode.h"
#include "image/mask.h"
#include "image/outpaint.h"
#include "pipeline/img2img.h"
#include "pipeline/job_geometry.h"
#include "util/sha256.h"

namespace canvas::cli {

void add_inpaint_command(CLI::App& app, InpaintOptions& options) {
  CLI::App* command = app.add_subcommand(
      "inpaint",
      "Repaint the masked part of a picture (on an edit model: edit-inpainting with Qwen-Image-Edit)");
  add_job_options(*command, options.job,
                  "What to steer away from (with --cfg-scale > 1; default \" \"; on an edit model guidance "
                  "runs only with one, as in the reference)");
  command->add_option("--image", options.image, "The picture to repaint (PNG, JPEG or WebP)")->required();
  CLI::Option* mask = command->add_option(
      "--mask", options.mask,
      "The mask: white is repainted, black kept (grey levels from 128 count as white once resized); a mask "
      "of another size is stretched to the working size");
  command
      ->add_flag("--mask-from-alpha", options.mask_from_alpha,
                 "Take the mask from the picture's transparency: transparent pixels are repainted")
      ->excludes(mask);
  command->add_flag("--invert-mask", options.invert_mask, "Repaint the black part of the mask instead");
  command
      ->add_option("--mask-blur", options.mask_blur,
                   "Blur the mask by this Gaussian radius in pixels first (VaeImageProcessor.blur)")
      ->check(CLI::NonNegativeNumber);
  command->add_option(
      "--padding-mask-crop", options.padding_mask_crop,
      "Inpaint only the region around the mask grown by this many pixels, at the working size, "
      "and paste it back into the picture");
  command->add_option(
      "--outpaint", options.outpaint,
      "Outpaint: grow the canvas by L,T,R,B pixels (right and bottom further, to multiples of "
      "16), fill the new area from the picture's edges and paint it; the picture's pixels "
      "come back unchanged");
  command
      ->add_option("--strength", options.strength,
                   "How much of the schedule runs, from 0 (the picture) to 1 (from pure noise); default "
                   "0.6, or 1 with --outpaint")
      ->check(CLI::Range(0.0, 1.0));
  command->add_option("--width", options.width,
                      "Working width in pixels (default: the picture's); floored to a multiple of 16");
  command->add_option("--height", options.height,
                      "Working height in pixels (default: the picture's); floored to a multiple of 16");
  command
      ->add_option("--text-positions", options.text_positions,
                   "Edit models: how the text encoder numbers the prompt's tokens around the picture (see "
                   "`canvas edit --help`)")
      ->check(CLI::IsMember({"mrope", "sequential"}))
      ->capture_default_str();
}

namespace {

// "L,T,R,B": four whole numbers of pixels, 0 or more.
OutpaintMargins parse_outpaint_margins(const std::string& text) {
  std::vector<int64_t> values;
  std::istringstream in(text);
  std::string field;
  while (std::getline(in, field, ',')) {
    size_t used = 0;
    int64_t value = -1;
    try {
      value = std::stoll(field, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    check(used > 0 && used == field.size() && value >= 0,
          "--outpaint takes four margins in pixels, L,T,R,B (e.g. 0,0,256,0), each 0 or more; got '" + text +
              "'");
    values.push_back(value);
  }
  check(values.size() == 4 && text.back() != ',',
        "--outpaint takes four margins in pixels, L,T,R,B (e.g. 0,0,256,0); got '" + text + "'");
  return {values[0], values[1], values[2], values[3]};
}

}  // namespace

int run_inpaint(const InpaintOptions& options) {
  ImageToImageRequest request;
  if (options.outpaint) request.outpaint = parse_outpaint_margins(*options.outpaint);
  check(options.mask || options.mask_from_alpha || request.outpaint,
        "inpainting needs --mask, --mask-from-alpha or --outpaint");
  request.strength = options.strength.value_or(request.outpaint ? 1.0 : request.strength);
  request.width = options.width;
  request.height = options.height;
  request.padding_mask_crop = options.padding_mask_crop;
  request.mask_blur = options.mask_blur;
  request.invert_mask = options.invert_mask;
  request.text_positions =
      options.text_positions == "sequential" ? TextPositions::Sequential : TextPositions::MRope;
  return run_image_to_image(options.job, request, options.image, options.mask, options.mask_from_alpha);
}

namespace {

// Reads a picture before the model loads (a bad file costs a moment, not a load) and records it.
DecodedImage read_input(const std::string& path, const std::string& option, JobCommand& command) {
  check_utf8(path, "the " + option + " path");
  DecodedImage decoded = read_image(path);
  decoded.rgb.text.clear();
  command.inputs.push_back({path, decoded.rgb.width, decoded.rgb.height, sha256_file_hex(path)});
  return decoded;
}

// Records the margins outpainting runs with, saying so when they grew to make the canvas a multiple of
// the model's pixel multiple.
void note_outpaint_margins(const ImageToImageRequest& request, const ImageToImageRequest& working,
                           const QwenImageConfigs& configs, JobCommand& command) {
  const OutpaintMargins asked = *request.outpaint;
  const OutpaintMargins margins =
      aligned_margins(asked, request.image.width, request.image.height, configs.pixel_multiple());
  command.task_settings["outpaint"] = {margins.left, margins.top, margins.right, margins.bottom};
  if (margins == asked) return;
  std::fprintf(stderr,
               "note: the --outpaint margins grow to %lld,%lld,%lld,%lld so that the canvas (%lldx%lld) is a "
               "multiple of %lld pixels a side and the picture comes back unresized\n",
               static_cast<long long>(margins.left), static_cast<long long>(margins.top),
               static_cast<long long>(margins.right), static_cast<long long>(margins.bottom),
               static_cast<long long>(working.image.width), static_cast<long long>(working.image.height),
               static_cast<long long>(configs.pixel_multiple()));
}

}  // namespace

int run_image_to_image(const JobOptions& job, ImageToImageRequest request, const std::string& image_path,
                       const std::optional<std::string>& mask_path, bool mask_from_picture_alpha) {
  request.sampling = job_settings(job);
  JobCommand command;
  const DecodedImage picture = read_input(image_path, "--image", command);
  request.image = picture.rgb;
  if (mask_path) request.mask = read_input(*mask_path, "--mask", command).rgb;
  if (mask_from_picture_alpha) request.mask = mask_from_alpha(picture);
  const bool inpaints = request.mask.has_value();
  if (inpaints && (request.mask->width != picture.rgb.width || request.mask->height != picture.rgb.height) &&
      !request.padding_mask_crop) {
    std::fprintf(stderr,
                 "note: the mask (%lldx%lld) is not the picture's size (%lldx%lld): it is stretched to the "
                 "working size, as the reference does\n",
                 static_cast<long long>(request.mask->width), static_cast<long long>(request.mask->height),
                 static_cast<long long>(picture.rgb.width), static_cast<long long>(picture.rgb.height));
  }
  if (inpaints && std::ranges::all_of(to_grey(*request.mask).pixels, [](uint8_t v) { return v == 0; }) &&
      !request.invert_mask) {
    std::fprintf(stderr, "note: the mask is black all over: nothing is repainted (the picture comes back)\n");
  }
  command.task_settings = {{"strength", request.strength}};
  if (inpaints) {
    command.task_settings["mask_blur"] = request.mask_blur;
    command.task_settings["invert_mask"] = request.invert_mask;
    command.task_settings["mask_from_alpha"] = mask_from_picture_alpha;
    if (request.padding_mask_crop) command.task_settings["padding_mask_crop"] = *request.padding_mask_crop;
  }
  // Which pipeline runs depends on the model, known once its configs are read.
  command.prepare = [&](const QwenImageConfigs& configs) {
    command.task = configs.edits()    ? "edit-inpaint"
                   : request.outpaint ? "outpaint"
                   : inpaints         ? "inpaint"
                                      : "img2img";
    if (configs.edits())
      command.task_settings["text_positions"] =
          request.text_positions == TextPositions::Sequential ? "sequential" : "mrope";
    validate_request(request, configs);
    const ImageToImageRequest working = outpainted_request(request, configs);
    if (request.outpaint) note_outpaint_margins(request, working, configs, command);
    const JobGeometry geometry = job_geometry(configs, working);
    process_pictures(working, geometry);  // e.g. an empty mask has no region to crop around
    return settings_as_run(request.sampling, geometry);
  };
  run_request(command, request, image_to_image);
  return run_job_command(job, command);
}

}  // namespace canvas::cli
