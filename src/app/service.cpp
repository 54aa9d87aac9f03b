#include "app/service.h"

namespace canvas::app {

namespace {

// The history's record of a job as it stands now.
HistoryEntry history_entry(const QueuedJob& job) {
  const JobSpec& spec = job.spec();
  HistoryEntry entry;
  entry.id = job.id();
  entry.task = std::string(task_name(spec.task));
  entry.model = spec.model;
  entry.state = std::string(state_name(job.state()));
  entry.priority = spec.priority;
  entry.parameters = job_spec_json(spec);
  for (const InputImage& image : spec.images) entry.input_sha256.push_back(image.sha256);
  if (spec.mask) entry.input_sha256.push_back(spec.mask->sha256);
  entry.error = job.error();
  entry.created_at = job.created_at();
  entry.started_at = job.started_at();
  entry.finished_at = job.finished_at();
  if (std::optional<JobOutcome> outcome = job.outcome()) {
    entry.parameters = outcome->parameters;
    entry.report = outcome->report;
    for (const JobImage& image : outcome->images) entry.outputs.push_back(image.path.string());
  }
  return entry;
}

}  // namespace

Service::Service(ServiceOptions options) {
  std::filesystem::create_directories(options.data_dir);
  history_ = std::make_unique<History>(history_file(options.data_dir));
  interrupted_ = history_->mark_interrupted();
  models_ = std::make_unique<ModelRegistry>(options.model_folders, options.lora_folder);
  residency_ = std::make_unique<ModelResidency>(options.device, options.precision, options.max_loaded_models);
  options.runner.data_dir = options.data_dir;
  runner_ = std::make_unique<JobRunner>(*models_, *residency_, options.runner);
  History& history = *history_;
  queue_ = std::make_unique<JobQueue>([runner = runner_.get()](QueuedJob& job) { return (*runner)(job); },
                                      [&history](const QueuedJob& job) {
                                        const HistoryEntry entry = history_entry(job);
                                        if (entry.state == "queued") {
                                          history.add(entry);
                                        } else {
                                          history.update(entry);
                                        }
                                      });
  server_ = std::make_unique<HttpServer>(
      ServerContext{*models_, *residency_, *history_, *queue_, *runner_, options.server});
}

Service::~Service() {
  server_->stop();
  server_.reset();
  queue_.reset();
}

}  // namespace canvas::app
