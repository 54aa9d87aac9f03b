// What every job command (`canvas generate`, `canvas edit`) shares: the options for the prompt, sampling,
// devices, memory and output, and the run around the pipeline itself: checks made before loading, loading,
// the progress and plan lines, the PNG with its metadata, the latents and profile files, and the summary.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/generation_metadata.h"
#include "pipeline/job.h"

namespace canvas::cli {

struct JobOptions {
  std::string model;
  std::string prompt;
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  std::vector<std::string> loras;  // FILE[:STRENGTH], parsed by LoraChoice::parse
  std::string lora_apply = "auto";
  std::optional<double> scheduler_shift;
  // A sampling preset (cli/lora_job.h): once parsed, the steps, CFG scale and scheduler shift the user did
  // not give are the preset's.
  std::optional<std::string> preset;
  std::optional<std::string> seed;    // parsed by seed_from_option
  std::optional<std::string> device;  // cpu when neither it nor devices is given
  std::optional<std::string> devices;
  std::string parallel = "auto";
  std::optional<std::string> precision;
  std::string strategy = "auto";
  std::string quality = "lossless";
  std::optional<double> vram_budget_gib;
  std::optional<double> ram_budget_gib;
  std::optional<std::string> profile;
  std::optional<std::string> save_latents;
  bool forget_recoveries = false;
  int batch_count = 1;
  std::string output;
};

// The image was written but the --profile files were not (e.g. a full disk): the job's result is kept, and
// scripts can tell this apart from a failed job (1).
constexpr int kProfileNotWrittenExitCode = 3;

// Adds the shared options to a job command. `negative_prompt_help` says when the command guides with it.
void add_job_options(CLI::App& command, JobOptions& options, const std::string& negative_prompt_help);

// The settings every job takes from the shared options: prompt, negative prompt, CFG scale, steps, the seed
// (a random one drawn for -1 or none), the LoRAs and the scheduler shift. Warns when the negative prompt
// cannot be used, and when a Lightning preset runs without a LoRA.
SamplingSettings job_settings(const JobOptions& options);

// `sampling` as a job of `geometry` runs it, for the metadata: with the working size it worked out and the
// prompt length it applies (0 where, as in the edit pipelines, the whole prompt is encoded).
TextToImageRequest settings_as_run(const SamplingSettings& sampling, const JobGeometry& geometry);

// What one kind of job adds to the shared run.
struct JobCommand {
  std::string task;                                         // "text-to-image", "edit": the metadata's task
  std::vector<InputPicture> inputs;                         // the files the job reads, for the metadata
  nlohmann::json task_settings = nlohmann::json::object();  // recorded beside the shared settings
  // Checks the request against the model's configs before any weight is loaded, and returns the settings
  // as the job will run them (the metadata's, e.g. an edit's output size worked out from its pictures).
  std::function<TextToImageRequest(const QwenImageConfigs&)> prepare;
  std::function<std::string(const QwenImageModel&, const MemoryOptions&)> recovery_key;
  // Runs one image of the batch with `seed`; `cache` keeps the weights arranged for the next image.
  std::function<JobResult(const QwenImageModel&, const MemoryOptions&, const JobObservers&, uint64_t seed,
                          ArrangementCache* cache)>
      run;
};

// Sets `command`'s recovery_key and run to those of `request` run through `pipeline` (text_to_image,
// image_edit or image_to_image), each image of the batch with its own seed.
template <typename Request, typename Pipeline>
void run_request(JobCommand& command, const Request& request, Pipeline pipeline) {
  command.recovery_key = [&request](const QwenImageModel& model, const MemoryOptions& memory) {
    return recovery_key(model, request, memory);
  };
  command.run = [&request, pipeline](const QwenImageModel& model, const MemoryOptions& memory,
                                     const JobObservers& observers, uint64_t seed, ArrangementCache* cache) {
    Request each = request;
    each.sampling.seed = seed;
    return pipeline(model, each, memory, observers, cache);
  };
}

// Runs the job (each image of its batch, seeds counting up from the first, the model loaded once and the
// weights kept arranged between images); returns the exit code. Throws canvas::Error (CancelledError once
// cancelled) when it fails; the images already written stay.
int run_job_command(const JobOptions& options, const JobCommand& command);

}  // namespace canvas::cli
