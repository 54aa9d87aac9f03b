#include "cli/inpaint_command.h"

#include <cstdio>
#include <sstream>
#include <vector>

#include "cli/job_inputs.h"
#include "image/outpaint.h"

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
  app::JobSpec spec = job_spec(options.job);
  spec.task = app::JobTask::Inpaint;
  if (options.outpaint) spec.outpaint = parse_outpaint_margins(*options.outpaint);
  check(options.mask || options.mask_from_alpha || spec.outpaint,
        "inpainting needs --mask, --mask-from-alpha or --outpaint");
  spec.strength = options.strength;
  spec.width = options.width;
  spec.height = options.height;
  spec.padding_mask_crop = options.padding_mask_crop;
  spec.mask_blur = options.mask_blur;
  spec.invert_mask = options.invert_mask;
  spec.mask_from_alpha = options.mask_from_alpha;
  spec.text_positions =
      options.text_positions == "sequential" ? TextPositions::Sequential : TextPositions::MRope;
  spec.images.push_back(read_input(options.image, "--image"));
  if (options.mask) spec.mask = read_input(*options.mask, "--mask");
  return run_job_command(options.job, spec);
}

}  // namespace canvas::cli
