#include "cli/edit_command.h"

#include <cstdio>

#include "cli/job_inputs.h"
#include "image/decode.h"
#include "pipeline/image_edit.h"
#include "pipeline/job_geometry.h"
#include "util/sha256.h"

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
  const JobOptions& job = options.job;
  ImageEditRequest request;
  request.sampling = job_settings(job);
  request.width = options.width;
  request.height = options.height;
  request.text_positions =
      options.text_positions == "sequential" ? TextPositions::Sequential : TextPositions::MRope;
  JobCommand command;
  command.task = "edit";
  command.task_settings = {{"text_positions", options.text_positions}};
  // The pictures are read before the model: a bad file costs a moment, not a load.
  for (const std::string& path : options.images) {
    check_utf8(path, "the --image path");
    const DecodedImage decoded = read_image(path);
    command.inputs.push_back({path, decoded.rgb.width, decoded.rgb.height, sha256_file_hex(path)});
    request.images.push_back(decoded.rgb);
    request.images.back().text.clear();
  }
  if (!job.negative_prompt && request.sampling.cfg_scale > 1.0f) {
    std::fprintf(stderr,
                 "note: no guidance: the edit pipelines guide only with a negative prompt (give "
                 "--negative-prompt \" \" to guide at --cfg-scale %.2f)\n",
                 request.sampling.cfg_scale);
  }
  command.prepare = [&](const QwenImageConfigs& configs) {
    validate_request(request, configs);
    return settings_as_run(request.sampling, job_geometry(configs, request));
  };
  run_request(command, request, image_edit);
  return run_job_command(job, command);
}

}  // namespace canvas::cli
