// Everything `canvas serve` runs, put together: the model and LoRA folders, the loaded models, the history,
// the queue with its runner, and the HTTP server. Tests run it in-process the same way.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "app/http_server.h"
#include "app/redis_board.h"
#include "app/redis_worker.h"

namespace canvas::app {

struct ServiceOptions {
  std::vector<std::filesystem::path> model_folders;
  std::optional<std::filesystem::path> lora_folder;
  std::filesystem::path data_dir;  // history.sqlite3 and images/
  Device device = Device::cpu();
  std::optional<DType> precision;
  size_t max_loaded_models = 4;
  RunnerSettings runner;  // its data_dir is data_dir
  ServerSettings server;
  // Cluster mode: the broker's URL (redis://...); jobs go through its queue to the workers of the cluster,
  // this server being one, and the history holds every job of the cluster. Unset: the embedded queue.
  std::optional<std::string> queue_url;
  RedisWorkerSettings worker;  // its info is filled in (host, port, device, models)
};

class Service {
 public:
  // Opens the history (marking the jobs an earlier run left unfinished as failed), reads the model folders
  // and binds the address; in cluster mode connects to the broker (refusing one off loopback without a
  // password) and starts this server's worker. Throws canvas::Error when any of that fails.
  explicit Service(ServiceOptions options);
  // Stops the server, cancels the queue's jobs and waits for them.
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  int port() const { return server_->port(); }
  const ModelRegistry& models() const { return *models_; }
  // Jobs an earlier run left queued or running, now marked failed.
  int interrupted_jobs() const { return interrupted_; }
  // Serves until stop().
  void run() { server_->run(); }
  void stop() { server_->stop(); }

 private:
  std::unique_ptr<History> history_;
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<ModelResidency> residency_;
  std::unique_ptr<JobRunner> runner_;
  std::unique_ptr<JobQueue> queue_;       // the embedded queue
  std::unique_ptr<RedisJobBoard> board_;  // or the cluster's
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<RedisWorker> worker_;
  int interrupted_ = 0;
};

}  // namespace canvas::app
