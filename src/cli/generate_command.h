// `canvas generate`: text-to-image from the command line.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/job_command.h"

namespace canvas::cli {

struct GenerateOptions {
  JobOptions job;
  int64_t width = 1024;
  int64_t height = 1024;
};

void add_generate_command(CLI::App& app, GenerateOptions& options);
// Runs the job; returns the exit code. Throws canvas::Error (CancelledError once cancelled) when it fails.
int run_generate(const GenerateOptions& options);

}  // namespace canvas::cli
