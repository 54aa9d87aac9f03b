#include "app/job_queue.h"

#include <algorithm>
#include <cstdio>
#include <random>

namespace canvas::app {

// 64 random bits in hexadecimal: ids stay unique across restarts, whose history keeps the old ones.
std::string new_job_id() {
  std::random_device device;
  const uint64_t bits = static_cast<uint64_t>(device()) << 32 | device();
  char id[17];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(bits));
  return id;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view state_name(JobState state) {
  switch (state) {
    case JobState::Queued:
      return "queued";
    case JobState::Running:
      return "running";
    case JobState::Done:
      return "done";
    case JobState::Failed:
      return "failed";
    case JobState::Cancelled:
      return "cancelled";
  }
  return "failed";
}

bool is_final(JobState state) {
  return state == JobState::Done || state == JobState::Failed || state == JobState::Cancelled;
}

QueuedJob::QueuedJob(std::string id, JobSpec spec, double created_at)
    : id_(std::move(id)), spec_(std::move(spec)), created_at_(created_at) {}

JobState QueuedJob::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::string QueuedJob::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

std::optional<JobOutcome> QueuedJob::outcome() const {
  std::lock_guard lock(mutex_);
  return outcome_;
}

double QueuedJob::started_at() const {
  std::lock_guard lock(mutex_);
  return started_at_;
}

double QueuedJob::finished_at() const {
  std::lock_guard lock(mutex_);
  return finished_at_;
}

nlohmann::json QueuedJob::status_json() const {
  std::lock_guard lock(mutex_);
  nlohmann::json status = {{"id", id_},
                           {"state", state_name(state_)},
                           {"task", task_name(spec_.task)},
                           {"model", spec_.model},
                           {"priority", spec_.priority},
                           {"created_at", created_at_}};
  if (started_at_ > 0) status["started_at"] = started_at_;
  if (finished_at_ > 0) status["finished_at"] = finished_at_;
  if (!error_.empty()) status["error"] = error_;
  if (const JobEvent* step = last_event_locked("step")) status["progress"] = step->data;
  if (outcome_) {
    status["images"] = nlohmann::json::array();
    for (const JobImage& image : outcome_->images)
      status["images"].push_back(
          {{"url", image.url}, {"seed", image.seed}, {"width", image.width}, {"height", image.height}});
    status["parameters"] = outcome_->parameters;
    status["report"] = outcome_->report;
  }
  return status;
}

std::vector<JobEvent> QueuedJob::events_after(int64_t after, std::chrono::milliseconds wait) const {
  std::unique_lock lock(mutex_);
  auto ready = [&] { return static_cast<int64_t>(events_.size()) > after || is_final(state_); };
  changed_.wait_for(lock, wait, ready);
  std::vector<JobEvent> events;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(after, 0)); i < events_.size(); ++i)
    events.push_back(events_[i]);
  return events;
}

std::optional<JobEvent> QueuedJob::last_event(const std::string& type) const {
  std::lock_guard lock(mutex_);
  const JobEvent* event = last_event_locked(type);
  return event ? std::optional<JobEvent>(*event) : std::nullopt;
}

const JobEvent* QueuedJob::last_event_locked(const std::string& type) const {
  for (auto it = events_.rbegin(); it != events_.rend(); ++it)
    if (it->type == type) return &*it;
  return nullptr;
}

void QueuedJob::emit(std::string type, nlohmann::json data) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back({static_cast<int64_t>(events_.size()) + 1, std::move(type), std::move(data)});
  }
  changed_.notify_all();
}

void QueuedJob::set_state(JobState state, const std::string& error) {
  nlohmann::json data = {{"state", state_name(state)}};
  if (!error.empty()) data["error"] = error;
  {
    std::lock_guard lock(mutex_);
    state_ = state;
    error_ = error;
    if (state == JobState::Running) started_at_ = unix_now();
    if (is_final(state)) finished_at_ = unix_now();
    events_.push_back({static_cast<int64_t>(events_.size()) + 1, "state", std::move(data)});
  }
  changed_.notify_all();
}

JobQueue::JobQueue(Runner runner, StateListener on_state, size_t keep_finished)
    : runner_(std::move(runner)), on_state_(std::move(on_state)), keep_finished_(keep_finished) {
  worker_ = std::thread([this] { work(); });
  finisher_ = std::thread([this] { finish(); });
}

JobQueue::~JobQueue() {
  cancel_all();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_worker_.notify_all();
  wake_finisher_.notify_all();
  worker_.join();
  finisher_.join();
}

std::shared_ptr<QueuedJob> JobQueue::submit(JobSpec spec) {
  auto job = std::make_shared<QueuedJob>(new_job_id(), std::move(spec), unix_now());
  job->emit("state", {{"state", "queued"}});
  if (on_state_) on_state_(*job);
  {
    std::lock_guard lock(mutex_);
    // After every job of the same or a higher priority: first come, first served within a priority.
    auto place = std::find_if(waiting_.begin(), waiting_.end(), [&](const std::shared_ptr<QueuedJob>& other) {
      return other->spec().priority < job->spec().priority;
    });
    waiting_.insert(place, job);
    jobs_[job->id()] = job;
  }
  wake_worker_.notify_one();
  return job;
}

std::shared_ptr<QueuedJob> JobQueue::find(const std::string& id) const {
  std::lock_guard lock(mutex_);
  const auto found = jobs_.find(id);
  return found == jobs_.end() ? nullptr : found->second;
}

std::vector<std::shared_ptr<QueuedJob>> JobQueue::jobs() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<QueuedJob>> all(waiting_.begin(), waiting_.end());
  if (running_) all.push_back(running_);
  for (auto it = ended_.rbegin(); it != ended_.rend(); ++it) all.push_back(jobs_.at(*it));
  for (const auto& [job, end] : finishing_) all.push_back(job);
  return all;
}

size_t JobQueue::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

bool JobQueue::cancel(const std::string& id) {
  std::shared_ptr<QueuedJob> job;
  {
    std::lock_guard lock(mutex_);
    const auto found = jobs_.find(id);
    if (found == jobs_.end() || is_final(found->second->state())) return false;
    job = found->second;
    if (job == running_) {
      // It stops at its next step or phase and ends as cancelled there.
      job->cancellation_.request();
      return true;
    }
    const auto queued = std::find(waiting_.begin(), waiting_.end(), job);
    if (queued == waiting_.end()) return false;  // its images are being written: it is as good as done
    waiting_.erase(queued);
  }
  job->cancellation_.request();
  end_job(job, JobState::Cancelled, "cancelled before it started");
  return true;
}

void JobQueue::cancel_all() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& job : waiting_) ids.push_back(job->id());
    if (running_) ids.push_back(running_->id());
  }
  for (const std::string& id : ids) cancel(id);
}

bool JobQueue::forget(const std::string& id) {
  std::lock_guard lock(mutex_);
  const auto ended = std::find(ended_.begin(), ended_.end(), id);
  if (ended == ended_.end()) return false;
  ended_.erase(ended);
  jobs_.erase(id);
  return true;
}

void JobQueue::end_job(const std::shared_ptr<QueuedJob>& job, JobState state, const std::string& error) {
  job->set_state(state, error);
  if (on_state_) on_state_(*job);
  std::lock_guard lock(mutex_);
  ended_.push_back(job->id());
  while (ended_.size() > keep_finished_) {
    jobs_.erase(ended_.front());
    ended_.pop_front();
  }
}

void JobQueue::work() {
  for (;;) {
    std::shared_ptr<QueuedJob> job;
    {
      std::unique_lock lock(mutex_);
      wake_worker_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;
      job = waiting_.front();
      waiting_.pop_front();
      running_ = job;
    }
    job->set_state(JobState::Running);
    if (on_state_) on_state_(*job);
    std::function<JobOutcome()> end;
    std::optional<std::pair<JobState, std::string>> failure;
    try {
      end = runner_(*job);
    } catch (const CancelledError&) {
      failure.emplace(JobState::Cancelled, "cancelled");
    } catch (const std::exception& error) {
      failure.emplace(job->cancellation().requested() ? JobState::Cancelled : JobState::Failed, error.what());
    }
    {
      std::lock_guard lock(mutex_);
      running_.reset();
      if (!failure) finishing_.emplace_back(job, std::move(end));
    }
    if (failure) {
      end_job(job, failure->first, failure->second);
    } else {
      wake_finisher_.notify_one();
    }
  }
}

void JobQueue::finish() {
  for (;;) {
    std::shared_ptr<QueuedJob> job;
    std::function<JobOutcome()> end;
    {
      std::unique_lock lock(mutex_);
      wake_finisher_.wait(lock, [&] { return stopping_ || !finishing_.empty(); });
      if (finishing_.empty()) return;  // stopping, with nothing left to write
      job = finishing_.front().first;
      end = std::move(finishing_.front().second);
      finishing_.pop_front();
    }
    try {
      JobOutcome outcome = end();
      {
        std::lock_guard lock(job->mutex_);
        job->outcome_ = std::move(outcome);
      }
      end_job(job, JobState::Done, "");
    } catch (const std::exception& error) {
      end_job(job, JobState::Failed, error.what());
    }
  }
}

}  // namespace canvas::app
