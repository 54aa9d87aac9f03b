#include "cli/edit_command.h"

#include <cstdio>

#include "cli/job_inputs.h"

namespace canvas::cli {

void add_edit_command(CLI::App& app, EditOptions& options) {
  CLI::App* command = app.add_subcommand("edit", "Edit pictures with Qwen-Image-Edit, as a prompt says");
  add_job_options(*command, options.job,
                  "What to steer away from; guidance runs only with one and --cfg-scale > 1, as in the "
                  "reference pipelines (give \" \" to guide without steering away from anything)");
  command
      ->add_option(
          "--image", options.images,
          "A picture to edit or draw from (PNG, JPEG or WebP); repeat for several (Qwen-Image-Edit-2509 "
          "and later), referred to in the prompt as picture 1, 2, ...")
      ->required();
  command->add_option("--width", options.width,
                      "Output width in pixels (default: the last picture's aspect at about 1 megapixel); "
                      "floored to a multiple of 16");
  command->add_option("--height", options.height, "Output height in pixels; floored to a multiple of 16");
  command
      ->add_option(
          "--text-positions", options.text_positions,
          "How the text encoder numbers the prompt's tokens around the pictures: mrope (Qwen2.5-VL's "
          "3D positions, as the models were trained) or sequential (what diffusers 0.42 computes "
          "with transformers 5, diffusers issue #14194)")
      ->check(CLI::IsMember({"mrope", "sequential"}))
      ->capture_default_str();
}

int run_edit(const EditOptions& options) {
  app::JobSpec spec = job_spec(options.job);
  spec.task = app::JobTask::Edit;
  spec.width = options.width;
  spec.height = options.height;
  spec.text_positions =
      options.text_positions == "sequential" ? TextPositions::Sequential : TextPositions::MRope;
  for (const std::string& path : options.images) spec.images.push_back(read_input(path, "--image"));
  return run_job_command(options.job, spec);
}

}  // namespace canvas::cli
