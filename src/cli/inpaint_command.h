// `canvas inpaint`: inpainting (and, on an edit model, edit-inpainting, and outpainting) from the command
// line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cli/job_command.h"
#include "pipeline/request.h"

namespace canvas::cli {

struct InpaintOptions {
  JobOptions job;
  std::string image;
  std::optional<std::string> mask;
  bool mask_from_alpha = false;
  bool invert_mask = false;
  float mask_blur = 0.0f;
  std::optional<int64_t> padding_mask_crop;
  std::optional<std::string> outpaint;  // "L,T,R,B" margins in pixels
  std::optional<double> strength;       // default 0.6, 1 when outpainting
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  std::string text_positions = "mrope";
};

void add_inpaint_command(CLI::App& app, InpaintOptions& options);
// Runs the job; returns the exit code. Throws canvas::Error (CancelledError once cancelled) when it fails.
int run_inpaint(const InpaintOptions& options);

}  // namespace canvas::cli
