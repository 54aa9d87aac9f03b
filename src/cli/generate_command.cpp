#include "cli/generate_command.h"

#include "cli/job_inputs.h"

namespace canvas::cli {

void add_generate_command(CLI::App& app, GenerateOptions& options) {
  CLI::App* command = app.add_subcommand("generate", "Generate an image from a text prompt");
  add_job_options(*command, options.job, "What to steer away from (with --cfg-scale > 1; default \" \")");
  command->add_option("--width", options.width,
                      "Image width in pixels, a multiple of 16 (default 1024; with --image the picture's, "
                      "floored to a multiple of 16)");
  command->add_option("--height", options.height,
                      "Image height in pixels, a multiple of 16 (default 1024; with --image the picture's, "
                      "floored to a multiple of 16)");
  CLI::Option* image = command->add_option(
      "--image", options.image, "img2img: start from this picture (PNG, JPEG or WebP) instead of pure noise");
  command
      ->add_option("--strength", options.strength,
                   "img2img: how much of the schedule runs, from 0 (the picture) to 1 (from pure noise)")
      ->check(CLI::Range(0.0, 1.0))
      ->needs(image)
      ->capture_default_str();
}

int run_generate(const GenerateOptions& options) {
  app::JobSpec spec = job_spec(options.job);
  spec.width = options.width;
  spec.height = options.height;
  if (options.image) {
    spec.task = app::JobTask::Img2Img;
    spec.strength = options.strength;
    spec.images.push_back(read_input(*options.image, "--image"));
  }
  return run_job_command(options.job, spec);
}

}  // namespace canvas::cli
