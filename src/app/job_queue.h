// The server's queue: jobs wait in priority order (first come, first served within a priority) and one
// worker runs them on the device, one at a time. The host-side end of a job (encoding and writing its
// images, recording it) runs on a finisher thread of its own, so the device starts the next job meanwhile.
// Every change of a job is an event its listeners (the SSE streams, the history) can wait for.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "app/job_board.h"
#include "app/job_outcome.h"
#include "app/job_spec.h"
#include "util/cancellation.h"

namespace canvas::app {

enum class JobState { Queued, Running, Done, Failed, Cancelled };
std::string_view state_name(JobState state);  // "queued", "running", "done", "failed", "cancelled"
bool is_final(JobState state);

// One thing that happened to a job, in the order it happened (`sequence` counts from 1).
struct JobEvent {
  int64_t sequence = 0;
  // "state" {state, error?}, "note" {text}, "plan" {lines}, "step" {image, images, step, steps, eta_s},
  // "recovery" {text}, "preview" {image, step, png_base64}
  std::string type;
  nlohmann::json data;
};

class QueuedJob {
 public:
  QueuedJob(std::string id, JobSpec spec, double created_at);

  const std::string& id() const { return id_; }
  const JobSpec& spec() const { return spec_; }
  const Cancellation& cancellation() const { return cancellation_; }

  JobState state() const;
  // Once failed or cancelled: why.
  std::string error() const;
  // Once done.
  std::optional<JobOutcome> outcome() const;
  // Unix seconds; 0 when not yet.
  double created_at() const { return created_at_; }
  double started_at() const;
  double finished_at() const;
  // The job's state and timings as the native API shows them (GET /v1/jobs/{id}).
  nlohmann::json status_json() const;

  // The events after `after`; waits up to `wait` for one when there are none yet and the job has not
  // ended. An empty result with the job ended means there will be no more.
  std::vector<JobEvent> events_after(int64_t after, std::chrono::milliseconds wait) const;
  // The last event of `type`, if any (e.g. the latest preview for a poll).
  std::optional<JobEvent> last_event(const std::string& type) const;

  // For whatever runs the job: adds an event and wakes the listeners.
  void emit(std::string type, nlohmann::json data);

 private:
  friend class JobQueue;
  // Cluster mode: the board mirrors the state a worker elsewhere recorded, the worker cancels on request.
  friend class RedisJobBoard;
  friend class RedisWorker;
  // last_event's work, with mutex_ held.
  const JobEvent* last_event_locked(const std::string& type) const;
  void set_state(JobState state, const std::string& error = "");

  const std::string id_;
  const JobSpec spec_;
  const double created_at_;
  Cancellation cancellation_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  JobState state_ = JobState::Queued;
  std::string error_;
  std::optional<JobOutcome> outcome_;
  double started_at_ = 0;
  double finished_at_ = 0;
  std::vector<JobEvent> events_;
};

class JobQueue : public JobBoard {
 public:
  // Runs a job's device work and returns its host-side end, which makes the outcome. Throws to fail the
  // job (CancelledError once its cancellation is requested).
  using Runner = std::function<std::function<JobOutcome()>(QueuedJob& job)>;
  // Told of every change of a job's state, on the thread that made it (e.g. to record it).
  using StateListener = std::function<void(const QueuedJob& job)>;

  // `keep_finished` jobs that ended stay findable here (older ones are the history's).
  JobQueue(Runner runner, StateListener on_state, size_t keep_finished = 256);
  // Cancels the running and queued jobs and waits for the threads.
  ~JobQueue();
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  std::shared_ptr<QueuedJob> submit(JobSpec spec);
  std::shared_ptr<QueuedJob> submit(JobSpec spec, const nlohmann::json&) override {
    return submit(std::move(spec));
  }
  std::shared_ptr<QueuedJob> find(const std::string& id) const override;
  // Jobs queued (in the order they will run), running and recently ended.
  std::vector<std::shared_ptr<QueuedJob>> jobs() const override;
  size_t waiting() const override;
  bool cancel(const std::string& id) override;
  // Cancels every queued job and the running one (A1111's interrupt).
  void cancel_all() override;
  // Drops an ended job so that find no longer returns it.
  bool forget(const std::string& id) override;

 private:
  void work();
  void finish();
  void end_job(const std::shared_ptr<QueuedJob>& job, JobState state, const std::string& error);

  Runner runner_;
  StateListener on_state_;
  size_t keep_finished_;
  mutable std::mutex mutex_;
  std::condition_variable wake_worker_;
  std::condition_variable wake_finisher_;
  bool stopping_ = false;
  std::deque<std::shared_ptr<QueuedJob>> waiting_;  // by priority, then arrival
  std::shared_ptr<QueuedJob> running_;
  std::deque<std::pair<std::shared_ptr<QueuedJob>, std::function<JobOutcome()>>> finishing_;
  std::map<std::string, std::shared_ptr<QueuedJob>> jobs_;  // every job still findable
  std::deque<std::string> ended_;                           // in the order they ended
  std::thread worker_;
  std::thread finisher_;
};

// Seconds since the Unix epoch, for the jobs' times.
double unix_now();
// A new job's id: 16 hexadecimal digits.
std::string new_job_id();

}  // namespace canvas::app
