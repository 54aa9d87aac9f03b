// The cluster's jobs as one server's HTTP routes see them (`canvas serve --queue redis://...`): submitting
// puts a job on the broker's queue for whichever worker has its model; every job of the cluster, wherever it
// runs, is a local QueuedJob that mirrors its record and follows its events through the broker's feed, so
// the native API's statuses, SSE streams and images, and the OpenAI and A1111 calls that wait for a job,
// work the same as with the embedded queue. Each mirror's state changes go to a listener (the server's
// history, which thereby holds every job of the cluster), and a finished job's PNGs are copied from the
// broker into this server's image folder.
#pragma once

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "app/job_queue.h"
#include "app/redis_queue.h"

namespace canvas::app {

class RedisJobBoard : public JobBoard {
 public:
  // Told of every change of a job's state, and of a job removed from the cluster's records.
  using StateListener = std::function<void(const QueuedJob& job)>;
  using RemovalListener = std::function<void(const std::string& id)>;

  // Connects, mirrors every job the broker has (each told to `on_state`) and follows the feed from then on.
  // `keep_finished` ended jobs stay mirrored (older ones are the history's). Throws canvas::Error when the
  // broker cannot be reached.
  // `image_path` says where this server keeps a job's images (JobRunner::image_path).
  RedisJobBoard(const RedisUrl& url, std::function<std::filesystem::path(const std::string&, int)> image_path,
                StateListener on_state, RemovalListener on_removed, size_t keep_finished = 256);
  ~RedisJobBoard() override;
  RedisJobBoard(const RedisJobBoard&) = delete;
  RedisJobBoard& operator=(const RedisJobBoard&) = delete;

  std::shared_ptr<QueuedJob> submit(JobSpec spec, const nlohmann::json& request) override;
  std::shared_ptr<QueuedJob> find(const std::string& id) const override;
  std::vector<std::shared_ptr<QueuedJob>> jobs() const override;
  size_t waiting() const override;
  bool cancel(const std::string& id) override;
  void cancel_all() override;
  bool forget(const std::string& id) override;
  nlohmann::json workers() const override;

 private:
  // The job's mirror, made from its record and events when there is none yet; null for an unknown job.
  // With mutex_ held; `queue` is the caller's connection.
  std::shared_ptr<QueuedJob> mirror_locked(RedisJobQueue& queue, const std::string& id) const;
  // Mirrors a job of `spec`, replaying its events.
  std::shared_ptr<QueuedJob> adopt_locked(RedisJobQueue& queue, const std::string& id, JobSpec spec,
                                          double created_at) const;
  // Applies one event of the feed (or of a replay) to the job's mirror.
  void apply_locked(RedisJobQueue& queue, QueuedJob& job, const RedisJobEvent& event) const;
  // Once done: the outcome, with the PNGs copied here.
  void attach_outcome_locked(RedisJobQueue& queue, QueuedJob& job) const;
  void follow();

  std::function<std::filesystem::path(const std::string&, int)> image_path_;
  StateListener on_state_;
  RemovalListener on_removed_;
  size_t keep_finished_;
  RedisClient client_;         // the routes' calls, with mutex_ held
  RedisClient follow_client_;  // the follower's blocking reads
  mutable RedisJobQueue queue_;
  mutable RedisJobQueue follow_queue_;
  std::string cursor_ = "$";
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::shared_ptr<QueuedJob>> mirrors_;
  mutable std::map<std::string, int64_t> applied_;  // the last event applied to each mirror
  mutable std::deque<std::string> ended_;           // mirrors of ended jobs, oldest first
  std::set<std::string> removed_here_;              // by forget(), until the feed tells of it
  std::atomic<bool> stopping_{false};
  std::thread follower_;
};

}  // namespace canvas::app
