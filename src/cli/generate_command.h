// `canvas generate`: text-to-image from the command line, and img2img with --image.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cli/job_command.h"

namespace canvas::cli {

struct GenerateOptions {
  JobOptions job;
  // Default 1024, or the --image picture's size.
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  std::optional<std::string> image;
  double strength = 0.6;
};

void add_generate_command(CLI::App& app, GenerateOptions& options);
// Runs the job; returns the exit code. Throws canvas::Error (CancelledError once cancelled) when it fails.
int run_generate(const GenerateOptions& options);

}  // namespace canvas::cli
