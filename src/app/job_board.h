// What the HTTP routes hand jobs to and ask about them: the embedded JobQueue, which runs them in this
// process, or RedisJobBoard (`canvas serve --queue redis://...`), which hands them to the workers of a
// cluster through a broker and shows what any of them is doing.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/job_spec.h"

namespace canvas::app {

class QueuedJob;

class JobBoard {
 public:
  virtual ~JobBoard() = default;

  // Queues `spec`. `request` is the native request it was read from, with its seed drawn and its model
  // resolved: what a board whose jobs run in other processes sends them.
  virtual std::shared_ptr<QueuedJob> submit(JobSpec spec, const nlohmann::json& request) = 0;
  virtual std::shared_ptr<QueuedJob> find(const std::string& id) const = 0;
  // Jobs queued, running and recently ended.
  virtual std::vector<std::shared_ptr<QueuedJob>> jobs() const = 0;
  virtual size_t waiting() const = 0;
  // A queued job is cancelled at once; a running one stops at its next step or phase. False for an unknown
  // job or one that has ended.
  virtual bool cancel(const std::string& id) = 0;
  virtual void cancel_all() = 0;
  // Drops an ended job, whose history entry is being removed. False for an unknown job or one that has not
  // ended.
  virtual bool forget(const std::string& id) = 0;
  // The processes that run the jobs, each {name, host, port, device, models, job, last_seen}; empty when
  // they are this process alone.
  virtual nlohmann::json workers() const { return nlohmann::json::array(); }
};

}  // namespace canvas::app
