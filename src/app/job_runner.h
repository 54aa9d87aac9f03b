// Runs the server's jobs on its device: the model from the registry (loaded once, kept by the residency),
// the job spec prepared as the command line prepares it, each image of the batch with its own seed, and
// progress, previews and recoveries as the job's events. The images are encoded and written afterwards,
// off the device's thread (JobQueue's finisher).
#pragma once

#include <filesystem>
#include <optional>

#include "app/job_queue.h"
#include "app/model_registry.h"
#include "app/residency.h"

namespace canvas::app {

struct RunnerSettings {
  std::filesystem::path data_dir;  // images go under data_dir/images/
  std::optional<int64_t> device_budget_bytes;
  std::optional<int64_t> host_budget_bytes;
  std::optional<int64_t> page_lock_budget_bytes;
  int preview_every = 5;  // a preview event every this many steps (and after the last); 0 for none
};

class JobRunner {
 public:
  JobRunner(const ModelRegistry& models, ModelResidency& residency, RunnerSettings settings);

  // JobQueue::Runner: the device work of `job`; returns the writing of its images.
  std::function<JobOutcome()> operator()(QueuedJob& job);

  // Where the images of job `id` go.
  std::filesystem::path image_path(const std::string& id, int index) const;

 private:
  const ModelRegistry& models_;
  ModelResidency& residency_;
  RunnerSettings settings_;
};

}  // namespace canvas::app
