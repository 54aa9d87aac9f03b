#include "cli/generate_command.h"

#include "pipeline/text_to_image.h"

namespace canvas::cli {

void add_generate_command(CLI::App& app, GenerateOptions& options) {
  CLI::App* command = app.add_subcommand("generate", "Generate an image from a text prompt");
  add_job_options(*command, options.job, "What to steer away from (with --cfg-scale > 1; default \" \")");
  command->add_option("--width", options.width, "Image width in pixels, a multiple of 16")
      ->capture_default_str();
  command->add_option("--height", options.height, "Image height in pixels, a multiple of 16")
      ->capture_default_str();
}

int run_generate(const GenerateOptions& options) {
  const JobOptions& job = options.job;
  TextToImageRequest request = job_settings(job);
  request.width = options.width;
  request.height = options.height;
  JobCommand command;
  command.task = "text-to-image";
  command.prepare = [&](const QwenImageConfigs& configs) {
    validate_request(request, configs);
    return request;
  };
  command.recovery_key = [&](const QwenImageModel& model, const MemoryOptions& memory) {
    return recovery_key(model, request, memory);
  };
  command.run = [&](const QwenImageModel& model, const MemoryOptions& memory, const JobObservers& observers) {
    return text_to_image(model, request, memory, observers);
  };
  return run_job_command(job, command);
}

}  // namespace canvas::cli
