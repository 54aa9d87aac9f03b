#include "app/redis_board.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "util/atomic_file.h"

namespace canvas::app {

namespace {

using nlohmann::json;

JobState state_named(const std::string& name) {
  for (JobState state :
       {JobState::Queued, JobState::Running, JobState::Done, JobState::Failed, JobState::Cancelled})
    if (state_name(state) == name) return state;
  throw Error("the broker recorded a job in the unknown state \"" + name + "\"");
}

// The submitting server checked the request against its own limits; a mirror only reads it back.
JobSpec recorded_spec(const json& request) {
  JobSpecLimits limits;
  limits.max_image_pixels = std::numeric_limits<int64_t>::max();
  limits.max_batch_count = std::numeric_limits<int>::max();
  limits.max_steps = std::numeric_limits<int>::max();
  return parse_job_spec(request, limits, [](const std::string& name) { return name; });
}

}  // namespace

RedisJobBoard::RedisJobBoard(const RedisUrl& url,
                             std::function<std::filesystem::path(const std::string&, int)> image_path,
                             StateListener on_state, RemovalListener on_removed, size_t keep_finished)
    : image_path_(std::move(image_path)),
      on_state_(std::move(on_state)),
      on_removed_(std::move(on_removed)),
      keep_finished_(keep_finished),
      client_(url),
      follow_client_(url),
      queue_(client_),
      follow_queue_(follow_client_) {
  // The feed's position first: what happens while the jobs are read comes through the feed.
  cursor_ = follow_queue_.feed_position();
  {
    std::lock_guard lock(mutex_);
    for (const std::string& id : queue_.job_ids()) mirror_locked(queue_, id);
  }
  follower_ = std::thread([this] { follow(); });
}

RedisJobBoard::~RedisJobBoard() {
  stopping_ = true;
  follower_.join();
}

std::shared_ptr<QueuedJob> RedisJobBoard::adopt_locked(RedisJobQueue& queue, const std::string& id,
                                                       JobSpec spec, double created_at) const {
  auto job = std::make_shared<QueuedJob>(id, std::move(spec), created_at);
  mirrors_[id] = job;
  applied_[id] = 0;
  for (const RedisJobEvent& event : queue.events_of(id)) apply_locked(queue, *job, event);
  return job;
}

std::shared_ptr<QueuedJob> RedisJobBoard::mirror_locked(RedisJobQueue& queue, const std::string& id) const {
  if (const auto found = mirrors_.find(id); found != mirrors_.end()) return found->second;
  const std::optional<RedisJobRecord> record = queue.record(id);
  if (!record) return nullptr;
  return adopt_locked(queue, id, recorded_spec(record->request), record->created_at);
}

void RedisJobBoard::apply_locked(RedisJobQueue& queue, QueuedJob& job, const RedisJobEvent& event) const {
  int64_t& applied = applied_[job.id()];
  if (event.sequence <= applied) return;
  applied = event.sequence;
  if (event.type != "state") {
    job.emit(event.type, event.data);
    return;
  }
  const JobState state = state_named(event.data.value("state", ""));
  // The outcome first: whoever sees the job done finds its images.
  if (state == JobState::Done) attach_outcome_locked(queue, job);
  {
    // As recorded, with its times: not QueuedJob::set_state, which stamps them now.
    std::lock_guard lock(job.mutex_);
    const double at = event.data.value("at", unix_now());
    job.state_ = state;
    job.error_ = event.data.value("error", "");
    if (state == JobState::Running) job.started_at_ = at;
    if (is_final(state)) job.finished_at_ = at;
    job.events_.push_back({static_cast<int64_t>(job.events_.size()) + 1, "state", event.data});
  }
  job.changed_.notify_all();
  if (on_state_) on_state_(job);
  if (is_final(state)) {
    ended_.push_back(job.id());
    while (ended_.size() > keep_finished_) {
      mirrors_.erase(ended_.front());
      applied_.erase(ended_.front());
      ended_.pop_front();
    }
  }
}

void RedisJobBoard::attach_outcome_locked(RedisJobQueue& queue, QueuedJob& job) const {
  const std::optional<RedisJobRecord> record = queue.record(job.id());
  if (!record || record->outcome.is_null()) return;
  JobOutcome outcome;
  outcome.parameters = record->outcome.value("parameters", json::object());
  outcome.report = record->outcome.value("report", json::object());
  const json& images = record->outcome.at("images");
  for (size_t index = 0; index < images.size(); ++index) {
    const int number = static_cast<int>(index);
    const std::filesystem::path path = image_path_(job.id(), number);
    // The worker that ran the job wrote it here already when it is this server.
    if (!std::filesystem::exists(path)) {
      if (std::optional<std::string> bytes = queue.png(job.id(), number)) {
        std::filesystem::create_directories(path.parent_path());
        write_file_atomically(path, *bytes);
      }
    }
    outcome.images.push_back({path, "/v1/jobs/" + job.id() + "/images/" + std::to_string(index),
                              images[index].value("seed", uint64_t{0}),
                              images[index].value("width", int64_t{0}),
                              images[index].value("height", int64_t{0})});
  }
  std::lock_guard lock(job.mutex_);
  job.outcome_ = std::move(outcome);
}

void RedisJobBoard::follow() {
  while (!stopping_) {
    try {
      const std::vector<RedisJobEvent> events = follow_queue_.follow(cursor_, std::chrono::milliseconds(300));
      for (const RedisJobEvent& event : events) {
        std::unique_lock lock(mutex_);
        if (event.type == "removed") {
          mirrors_.erase(event.job_id);
          applied_.erase(event.job_id);
          // A removal through this server is its route's to finish (History::remove says whether it did).
          const bool ours = removed_here_.erase(event.job_id) > 0;
          lock.unlock();
          if (on_removed_ && !ours) on_removed_(event.job_id);
          continue;
        }
        // A job new to this server is mirrored with everything it has had, this event included.
        if (std::shared_ptr<QueuedJob> job = mirror_locked(follow_queue_, event.job_id))
          apply_locked(follow_queue_, *job, event);
      }
    } catch (const std::exception& error) {
      std::fprintf(stderr, "following the broker's events: %s\n", error.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

std::shared_ptr<QueuedJob> RedisJobBoard::submit(JobSpec spec, const json& request) {
  const std::string id = new_job_id();
  const double created_at = unix_now();
  std::lock_guard lock(mutex_);
  queue_.submit(id, request, job_spec_json(spec), std::string(task_name(spec.task)), spec.priority,
                created_at);
  return adopt_locked(queue_, id, std::move(spec), created_at);
}

std::shared_ptr<QueuedJob> RedisJobBoard::find(const std::string& id) const {
  std::lock_guard lock(mutex_);
  return mirror_locked(queue_, id);
}

std::vector<std::shared_ptr<QueuedJob>> RedisJobBoard::jobs() const {
  std::vector<std::shared_ptr<QueuedJob>> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, job] : mirrors_) all.push_back(job);
  }
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a->created_at() < b->created_at(); });
  return all;
}

size_t RedisJobBoard::waiting() const {
  std::lock_guard lock(mutex_);
  return static_cast<size_t>(std::count_if(mirrors_.begin(), mirrors_.end(), [](const auto& entry) {
    return entry.second->state() == JobState::Queued;
  }));
}

bool RedisJobBoard::cancel(const std::string& id) {
  std::lock_guard lock(mutex_);
  return queue_.cancel(id);
}

void RedisJobBoard::cancel_all() {
  std::lock_guard lock(mutex_);
  for (const auto& [id, job] : mirrors_)
    if (!is_final(job->state())) queue_.cancel(id);
}

bool RedisJobBoard::forget(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (queue_.remove(id)) {
    removed_here_.insert(id);
  } else if (queue_.record(id)) {
    return false;  // not ended; a job already removed by another server has nothing left to keep
  }
  mirrors_.erase(id);
  applied_.erase(id);
  return true;
}

json RedisJobBoard::workers() const {
  std::lock_guard lock(mutex_);
  return queue_.workers();
}

}  // namespace canvas::app
