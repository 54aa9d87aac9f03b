// A job spec made ready to run on one model: the pipeline's request built from it and checked against the
// model's configs (before any weight loads), the pipeline to run, and what the image's metadata records.
// The command line and the server both run their jobs through it, so the same settings make the same
// pixels and metadata either way.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/job_spec.h"
#include "pipeline/generation_metadata.h"
#include "pipeline/job.h"

namespace canvas::app {

struct PreparedJob {
  // The metadata's task: "text-to-image", "img2img", "inpaint", "outpaint", "edit" or "edit-inpaint".
  std::string task;
  std::vector<InputPicture> inputs;                         // the pictures the job reads, for the metadata
  nlohmann::json task_settings = nlohmann::json::object();  // recorded beside the shared settings
  // The settings as the job runs them (e.g. an edit's output size worked out from its pictures).
  TextToImageRequest settings;
  // What the user should hear before it runs: settings that do not do what they may expect (a mask of
  // another size stretched, a negative prompt an edit does not guide with, margins grown).
  std::vector<std::string> notes;
  std::function<std::string(const QwenImageModel&, const MemoryOptions&)> recovery_key;
  // Runs one image with `seed`; `cache` keeps the weights arranged for the next job.
  std::function<JobResult(const QwenImageModel&, const MemoryOptions&, const JobObservers&, uint64_t seed,
                          ArrangementCache* cache)>
      run;
};

// Builds and checks the pipeline request of `spec` for a model with `configs`. Throws canvas::Error for a
// request the model cannot run (a size that is no multiple of its patch, an edit on a text-to-image model,
// an empty mask with padding_mask_crop, ...).
PreparedJob prepare_job(const JobSpec& spec, const QwenImageConfigs& configs);

// How the spec asks its weights to be held: its strategy, quality and way of applying LoRAs. The caller
// adds the devices and budgets.
MemoryOptions job_memory_options(const JobSpec& spec);

// The 8-bit PNG of a finished job's image, with the generation metadata of `record` in its text chunks.
RgbImage generated_image(const GenerationRecord& record);

}  // namespace canvas::app
