#include "app/redis_worker.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

namespace canvas::app {

namespace {

using nlohmann::json;

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  check(file.good(), "cannot read the image " + path.string() + " the job wrote");
  return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

// What the broker keeps of an outcome beside the PNGs: each server makes its own paths and URLs.
json outcome_json(const JobOutcome& outcome) {
  json images = json::array();
  for (const JobImage& image : outcome.images)
    images.push_back({{"seed", image.seed}, {"width", image.width}, {"height", image.height}});
  return {{"parameters", outcome.parameters}, {"report", outcome.report}, {"images", images}};
}

}  // namespace

RedisWorker::RedisWorker(const RedisUrl& url, const ModelRegistry& models, JobRunner& runner,
                         RedisWorkerSettings settings)
    : url_(url),
      models_(models),
      runner_(runner),
      settings_(std::move(settings)),
      client_(url),
      beat_client_(url),
      relay_client_(url),
      queue_(client_) {
  for (const ModelEntry& entry : models.models()) model_ids_.push_back(entry.id);
  RedisJobQueue(beat_client_).heartbeat(settings_.name, settings_.info, settings_.lease);
  worker_ = std::thread([this] { work(); });
  beater_ = std::thread([this] { beat(); });
}

RedisWorker::~RedisWorker() {
  stopping_ = true;
  {
    std::lock_guard lock(mutex_);
    if (running_) running_->cancellation_.request();
  }
  wake_beat_.notify_all();
  worker_.join();
  beater_.join();
  try {
    RedisJobQueue(beat_client_).leave(settings_.name);
  } catch (const Error&) {
    // The broker is gone: the heartbeat expires by itself.
  }
}

void RedisWorker::work() {
  if (model_ids_.empty()) return;
  while (!stopping_) {
    try {
      if (std::optional<RedisClaim> claim =
              queue_.claim(settings_.name, model_ids_, settings_.lease, std::chrono::milliseconds(500)))
        run(*claim);
    } catch (const std::exception& error) {
      // The broker restarting or unreachable: say so and try again, rather than stop serving.
      std::fprintf(stderr, "worker %s: %s\n", settings_.name.c_str(), error.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

void RedisWorker::beat() {
  RedisJobQueue queue(beat_client_);
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    json info = settings_.info;
    info["job"] = running_ ? json(running_->id()) : json(nullptr);
    const std::optional<RedisClaim> claim = running_claim_;
    const std::shared_ptr<QueuedJob> job = running_;
    lock.unlock();
    try {
      queue.heartbeat(settings_.name, info, settings_.lease);
      if (claim) {
        queue.renew(settings_.name, *claim);
        std::optional<RedisJobRecord> record = queue.record(claim->job_id);
        if (job && record && record->cancel_requested) job->cancellation_.request();
      }
    } catch (const std::exception& error) {
      std::fprintf(stderr, "worker %s: heartbeat: %s\n", settings_.name.c_str(), error.what());
    }
    lock.lock();
    // At least every second: a cancellation is noticed within one.
    wake_beat_.wait_for(lock,
                        std::min<std::chrono::milliseconds>(settings_.lease / 3, std::chrono::seconds(1)),
                        [this] { return stopping_.load(); });
  }
}

void RedisWorker::relay(const QueuedJob& job, const std::atomic<bool>& done) {
  RedisJobQueue queue(relay_client_);
  int64_t sent = 0;
  for (;;) {
    const bool last = done;
    const std::vector<JobEvent> events = job.events_after(sent, std::chrono::milliseconds(100));
    for (const JobEvent& event : events) {
      try {
        queue.emit(job.id(), event.type, event.data);
      } catch (const std::exception& error) {
        // Progress lost while the broker is away; the job's end is recorded by the work thread.
        std::fprintf(stderr, "worker %s: relaying an event: %s\n", settings_.name.c_str(), error.what());
      }
      sent = event.sequence;
    }
    if (last && events.empty()) return;
  }
}

void RedisWorker::run(const RedisClaim& claim) {
  const std::optional<RedisJobRecord> record = queue_.record(claim.job_id);
  const std::optional<int> attempts = record ? queue_.start(claim.job_id, settings_.name) : std::nullopt;
  if (!attempts) {
    // Removed, cancelled while queued, or completed by a worker that took it over.
    queue_.ack(claim);
    return;
  }
  if (*attempts > settings_.max_attempts) {
    queue_.complete(claim.job_id, settings_.name, "failed",
                    "started " + std::to_string(*attempts - 1) +
                        " times, and each worker stopped before it ended: not tried again");
    queue_.ack(claim);
    return;
  }
  std::shared_ptr<QueuedJob> job;
  try {
    JobSpec spec = parse_job_spec(record->request, settings_.limits,
                                  [&](const std::string& name) { return models_.lora_path(name).string(); });
    job = std::make_shared<QueuedJob>(claim.job_id, std::move(spec), record->created_at);
  } catch (const std::exception& error) {
    queue_.complete(claim.job_id, settings_.name, "failed", error.what());
    queue_.ack(claim);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    running_ = job;
    running_claim_ = claim;
  }
  std::atomic<bool> relayed{false};
  std::thread relayer([&] { relay(*job, relayed); });
  std::string state = "done", error;
  JobOutcome outcome;
  try {
    outcome = runner_(*job)();
  } catch (const CancelledError&) {
    state = "cancelled";
    error = "cancelled";
  } catch (const std::exception& failure) {
    state = "failed";
    error = failure.what();
  }
  relayed = true;
  relayer.join();
  {
    std::lock_guard lock(mutex_);
    running_.reset();
    running_claim_.reset();
  }
  // A stop is not the job's cancellation: it stays claimed, for another worker to take over after the lease.
  if (stopping_ && state == "cancelled") return;
  if (state == "done") {
    std::vector<std::string> pngs;
    for (const JobImage& image : outcome.images) pngs.push_back(file_bytes(image.path));
    queue_.complete(claim.job_id, settings_.name, state, "", outcome_json(outcome), pngs);
  } else {
    queue_.complete(claim.job_id, settings_.name, state, error);
  }
  queue_.ack(claim);
}

}  // namespace canvas::app
