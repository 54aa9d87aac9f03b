// `canvas generate`: text-to-image from the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace canvas::cli {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  int64_t width = 1024;
  int64_t height = 1024;
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
  bool forget_recoveries = false;
  std::string output;
};

// The image was written but the --profile files were not (e.g. a full disk): the job's result is kept, and
// scripts can tell this apart from a failed job (1).
constexpr int kProfileNotWrittenExitCode = 3;

void add_generate_command(CLI::App& app, GenerateOptions& options);
// Runs the job; returns the exit code. Throws canvas::Error (CancelledError once cancelled) when it fails.
int run_generate(const GenerateOptions& options);

}  // namespace canvas::cli
