// The cluster's shared queue and job records on a Redis broker: what submitters, workers and every
// server's view of the jobs agree on.
//
// Keys (all under "canvas:"):
//   jobs:MODEL      a stream per model, consumer group "workers": a worker reads only the streams of the
//                   models it has, so it never takes a job it cannot load
//   job:ID          the job's record (a hash): request, spec, state, worker, times, error, outcome, PNGs
//   job:ID:events   the job's events in order, for a late reader to replay
//   events          every job's events, the live feed each server's view follows (capped)
//   index           every job id by creation time (a sorted set)
//   worker:NAME     a worker's heartbeat (expires when it stops beating); workers: the names
//
// A claimed job stays in its stream's pending list until acked. Its worker renews the lease (XCLAIM resets
// the idle time) while it runs; once the worker has been silent past the lease, another worker takes it
// over with XAUTOCLAIM. Every change of a record is a Lua script, so the end of a job is recorded exactly
// once however many workers ran it: the first complete() wins, the others only ack.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "app/redis_client.h"

namespace canvas::app {

// A job taken from a model's stream.
struct RedisClaim {
  std::string job_id;
  std::string model;
  std::string entry;  // the stream entry's id
};

// A job's record as the broker holds it (the fields of canvas:job:ID).
struct RedisJobRecord {
  std::string id;
  nlohmann::json request;  // the native request, seed and model resolved (JobBoard::submit)
  nlohmann::json spec;     // job_spec_json: what the history records of the settings
  std::string model;
  std::string task;
  int priority = 0;
  std::string state;   // "queued", "running", "done", "failed", "cancelled"
  std::string worker;  // the last to start it
  std::string completed_by;
  std::string error;
  double created_at = 0, started_at = 0, finished_at = 0;
  int attempts = 0;
  bool cancel_requested = false;
  nlohmann::json outcome;  // {parameters, report, images: [{seed, width, height}]} once done
  int64_t events = 0;      // how many events it has had
};

// One event of a job, as the broker carries it.
struct RedisJobEvent {
  std::string job_id;
  int64_t sequence = 0;  // counts from 1 within the job
  std::string type;
  nlohmann::json data;
};

class RedisJobQueue {
 public:
  // Over a connection of the caller's (one per thread: connections are not shared).
  explicit RedisJobQueue(RedisClient& client);

  // Submitting: records the job, queues it on its model's stream and emits its "queued" event.
  void submit(const std::string& id, const nlohmann::json& request, const nlohmann::json& spec,
              const std::string& task, int priority, double created_at);

  // Taking: first a job whose worker has been silent for `lease` (taken over), else a new one, waiting up
  // to `block` for one. Only the streams of `models` are read.
  std::optional<RedisClaim> claim(const std::string& worker, const std::vector<std::string>& models,
                                  std::chrono::milliseconds lease, std::chrono::milliseconds block);
  // Keeps the claim `worker` holds from being taken over (its idle time starts again).
  void renew(const std::string& worker, const RedisClaim& claim);
  // Takes the job out of its stream's pending list: it will not be delivered again.
  void ack(const RedisClaim& claim);

  // Every state event's data has "state" and "at" (Unix seconds), and "worker" from a worker, "error" for a
  // failure or a cancellation.
  // Marks the job running on `worker` and returns how many times it has been started, or nothing when it
  // has already ended (a job completed elsewhere, or cancelled while queued).
  std::optional<int> start(const std::string& id, const std::string& worker);
  // Adds an event to a job that has not ended; false when it has.
  bool emit(const std::string& id, const std::string& type, const nlohmann::json& data);
  // Ends the job, once: `state` is done (with `outcome` and the PNG files' bytes), failed or cancelled
  // (with `error`). True for the call that ended it, false when it had already ended.
  bool complete(const std::string& id, const std::string& worker, const std::string& state,
                const std::string& error, const nlohmann::json& outcome = nullptr,
                const std::vector<std::string>& pngs = {});
  // Asks for the job to stop: a queued one is cancelled at once, a running one by its worker. False when it
  // is unknown or has ended.
  bool cancel(const std::string& id);
  // Removes an ended job's record and events; false when it is unknown or has not ended.
  bool remove(const std::string& id);

  std::optional<RedisJobRecord> record(const std::string& id);
  // The bytes of the job's `index`th image, when it is done.
  std::optional<std::string> png(const std::string& id, int index);
  // Every job id, oldest first.
  std::vector<std::string> job_ids();
  // The job's events after `after`, in order.
  std::vector<RedisJobEvent> events_of(const std::string& id, int64_t after = 0);
  // The feed's position now: following from it gives every event added from now on.
  std::string feed_position();
  // The live feed: events of every job after the feed's position `cursor`, waiting up to `block` (more
  // than 0) for one; `cursor` moves past what is returned.
  std::vector<RedisJobEvent> follow(std::string& cursor, std::chrono::milliseconds block);

  // Workers' heartbeats: `info` is {host, port, device, models, job, ...}; it expires after `ttl` unless
  // beaten again.
  void heartbeat(const std::string& worker, const nlohmann::json& info, std::chrono::milliseconds ttl);
  void leave(const std::string& worker);
  // The live workers' infos, each with its "name" and "last_seen".
  nlohmann::json workers();

 private:
  // claim's work.
  std::optional<RedisClaim> take(const std::string& worker, const std::vector<std::string>& models,
                                 std::chrono::milliseconds lease, std::chrono::milliseconds block);
  // Makes the model's stream and its consumer group unless they are there.
  void ensure_group(const std::string& model);

  RedisClient& client_;
  std::set<std::string> grouped_;
  // Entries one read delivered beyond the first (one per stream may come): claimed, to run next.
  std::vector<RedisClaim> backlog_;
};

}  // namespace canvas::app
