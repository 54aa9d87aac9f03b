// What every job command (`canvas generate`, `canvas edit`, `canvas inpaint`) shares: the options for the
// prompt, sampling, devices, memory and output, and the run around the pipeline itself: checks made before
// loading, loading, the progress and plan lines, the PNG with its metadata, the latents and profile files,
// and the summary.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/job_spec.h"

namespace canvas::cli {

struct JobOptions {
  std::string model;
  // The parts a single-file transformer --model lacks (io/model_layout.h ModelParts); empty when not given.
  std::string text_encoder;
  std::string vae;
  std::string prompt;
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  std::vector<std::string> loras;  // FILE[:STRENGTH], parsed by LoraChoice::parse
  std::string lora_apply = "auto";
  std::optional<double> scheduler_shift;
  // A sampling preset (app/sampling_presets.h): once parsed, the steps, CFG scale and scheduler shift the
  // user did not give are the preset's.
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
  std::optional<double> pin_budget_gib;
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

// "cpu", "cuda" or "cuda:N"; throws canvas::Error for anything else.
Device parse_device(const std::string& name);
// --precision: f32, bf16 or f16; none for the device's default.
std::optional<DType> parse_precision(const std::optional<std::string>& name);
// A --vram-budget or --ram-budget in GiB as bytes; throws canvas::Error naming `option` unless positive.
std::optional<int64_t> budget_bytes(const std::optional<double>& gib, const char* option);
// --pin-budget's bytes: as budget_bytes, and 0 turns page locking off.
std::optional<int64_t> pin_budget_bytes(const std::optional<double>& gib);
// Registers the device's backend (GPU backends only when asked for, so CPU runs need no driver); throws
// canvas::Error when the device is not there.
void prepare_device(Device device);

// The job the shared options describe, before the command adds its task and pictures: the sampling
// settings, the preset and how the weights are held.
app::JobSpec job_spec(const JobOptions& options);

// Runs the job (each image of its batch, seeds counting up from the first, the model loaded once and the
// weights kept arranged between images); returns the exit code. Throws canvas::Error (CancelledError once
// cancelled) when it fails; the images already written stay.
int run_job_command(const JobOptions& options, const app::JobSpec& spec);

}  // namespace canvas::cli
