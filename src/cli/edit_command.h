// `canvas edit`: editing pictures with Qwen-Image-Edit from the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/job_command.h"

namespace canvas::cli {

struct EditOptions {
  JobOptions job;
  std::vector<std::string> images;
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  std::string text_positions = "mrope";
};

void add_edit_command(CLI::App& app, EditOptions& options);
// Runs the job; returns the exit code. Throws canvas::Error (CancelledError once cancelled) when it fails.
int run_edit(const EditOptions& options);

}  // namespace canvas::cli
