// A worker of a `canvas serve` cluster: it takes jobs of the models this server has from the broker's
// queue (app/redis_queue.h), runs them on its JobRunner one at a time, relays their events to the broker,
// and records their ends there, PNGs included, so that every server of the cluster can show and serve them.
//
// It beats every second (or lease/3, if shorter): its heartbeat (host, device, models, the job), and while it
// runs a job the renewal of its claim and a look for a cancellation. A worker that dies stops beating; after
// the lease another worker takes its job over and runs it again. A worker that is stopped leaves its running
// job to be taken over the same way.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "app/job_runner.h"
#include "app/model_registry.h"
#include "app/redis_queue.h"

namespace canvas::app {

struct RedisWorkerSettings {
  std::string name;  // unique in the cluster
  std::chrono::milliseconds lease = std::chrono::seconds(30);
  // A job started this many times without ending (each of its workers died) fails instead of running again.
  int max_attempts = 3;
  JobSpecLimits limits;
  nlohmann::json info = nlohmann::json::object();  // what the heartbeat tells: host, port, device, models
};

class RedisWorker {
 public:
  // Connects (two connections: the queue's and the heartbeat's) and starts taking jobs. Throws
  // canvas::Error when the broker cannot be reached.
  RedisWorker(const RedisUrl& url, const ModelRegistry& models, JobRunner& runner,
              RedisWorkerSettings settings);
  // Stops taking jobs, stops the running one at its next step (left for another worker) and leaves.
  ~RedisWorker();
  RedisWorker(const RedisWorker&) = delete;
  RedisWorker& operator=(const RedisWorker&) = delete;

 private:
  void work();
  void beat();
  void run(const RedisClaim& claim);
  // Sends the job's events after `sent` to the broker until `done` is set and none are left.
  void relay(const QueuedJob& job, const std::atomic<bool>& done);

  const RedisUrl url_;
  const ModelRegistry& models_;
  JobRunner& runner_;
  const RedisWorkerSettings settings_;
  std::vector<std::string> model_ids_;
  RedisClient client_;        // the work thread's
  RedisClient beat_client_;   // the heartbeat thread's
  RedisClient relay_client_;  // the event relay's
  RedisJobQueue queue_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_beat_;
  std::shared_ptr<QueuedJob> running_;
  std::optional<RedisClaim> running_claim_;
  std::thread worker_;
  std::thread beater_;
};

}  // namespace canvas::app
