#include "app/service.h"

#include <unistd.h>

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

// Records the job as it stands now, whether the history has it yet or not.
void record(History& history, const QueuedJob& job) {
  const HistoryEntry entry = history_entry(job);
  if (history.find(entry.id)) {
    history.update(entry);
  } else {
    history.add(entry);
  }
}

}  // namespace

Service::Service(ServiceOptions options) {
  std::filesystem::create_directories(options.data_dir);
  models_ = std::make_unique<ModelRegistry>(options.model_folders, options.lora_folder);
  residency_ = std::make_unique<ModelResidency>(options.device, options.precision, options.max_loaded_models);
  options.runner.data_dir = options.data_dir;
  runner_ = std::make_unique<JobRunner>(*models_, *residency_, options.runner);
  JobBoard* board = nullptr;
  std::optional<RedisUrl> broker;
  if (options.queue_url) {
    broker = parse_redis_url(*options.queue_url);
    check_broker_security(*broker);
    // A copy of the cluster's records (the broker's are the truth), apart from this server's own history.
    history_ = std::make_unique<History>(options.data_dir / "cluster-history.sqlite3");
    History& history = *history_;
    board_ = std::make_unique<RedisJobBoard>(
        *broker,
        [runner = runner_.get()](const std::string& id, int index) { return runner->image_path(id, index); },
        [&history](const QueuedJob& job) { record(history, job); },
        [&history](const std::string& id) { history.remove(id); });
    board = board_.get();
  } else {
    history_ = std::make_unique<History>(history_file(options.data_dir));
    interrupted_ = history_->mark_interrupted();
    History& history = *history_;
    queue_ = std::make_unique<JobQueue>([runner = runner_.get()](QueuedJob& job) { return (*runner)(job); },
                                        [&history](const QueuedJob& job) { record(history, job); });
    board = queue_.get();
  }
  server_ = std::make_unique<HttpServer>(
      ServerContext{*models_, *residency_, *history_, *board, *runner_, options.server});
  if (broker) {
    nlohmann::json models = nlohmann::json::array();
    for (const ModelEntry& entry : models_->models()) models.push_back(entry.id);
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    if (options.worker.name.empty())
      options.worker.name = std::string(host) + ":" + std::to_string(server_->port());
    options.worker.info["host"] = host;
    options.worker.info["port"] = server_->port();
    options.worker.info["device"] = options.device.str();
    options.worker.info["models"] = models;
    options.worker.limits = options.server.limits;
    worker_ = std::make_unique<RedisWorker>(*broker, *models_, *runner_, options.worker);
  }
}

Service::~Service() {
  server_->stop();
  server_.reset();
  worker_.reset();
  board_.reset();
  queue_.reset();
}

}  // namespace canvas::app
