// `canvas inpaint`: inpainting (and, on an edit model, edit-inpainting) from the command line, and the run
// that img2img (`canvas generate --image`) shares with it.
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

// The share of img2img and inpainting: reads the picture at `image_path` (and the mask at `mask_path`, or
// the picture's transparency with `mask_from_picture_alpha`) into `request` before any model loads, records
// them with their SHA-256, and runs the job.
int run_image_to_image(const JobOptions& job, ImageToImageRequest request, const std::string& image_path,
                       const std::optional<std::string>& mask_path, bool mask_from_picture_alpha);

}  // namespace canvas::cli
