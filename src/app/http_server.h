// `canvas serve`'s HTTP side: the native API (/v1/jobs, /v1/models, /v1/memory), the OpenAI Images API
// (/v1/images/...) and the A1111 web API (/sdapi/v1/...) over one job queue, through cpp-httplib.
//
// Safety: it listens on loopback unless told otherwise, and any other address needs a bearer token; bodies,
// uploads and pictures have size limits; every field is checked, with JSON 4xx errors; models and LoRAs are
// named by id, never by path.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "app/history.h"
#include "app/job_queue.h"
#include "app/job_runner.h"
#include "app/model_registry.h"
#include "app/residency.h"

namespace canvas::app {

struct ServerSettings {
  std::string host = "127.0.0.1";
  int port = 7860;  // 0: any free port (port() says which)
  // Required from every client as "Authorization: Bearer TOKEN" when set; needed for a non-loopback host.
  std::optional<std::string> token;
  size_t max_body_bytes = 64 << 20;  // a request's whole body, uploads included
  JobSpecLimits limits;
  int http_threads = 32;  // SSE streams and the synchronous OpenAI/A1111 calls hold one each
};

// Whether `host` only accepts connections from this machine.
bool is_loopback(const std::string& host);

// Everything the routes work with; owned by whoever runs the server (the serve command, a test).
struct ServerContext {
  ModelRegistry& models;
  ModelResidency& residency;
  History& history;
  JobBoard& queue;  // the embedded JobQueue, or RedisJobBoard in cluster mode
  JobRunner& runner;
  ServerSettings settings;
};

class HttpServer {
 public:
  // Binds the address (throws canvas::Error when it cannot: in use, not an address of this machine, or a
  // non-loopback host without a token).
  explicit HttpServer(ServerContext context);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Serves until stop() (from another thread or a signal's watcher).
  void run();
  void stop();

 private:
  struct Routes;
  ServerContext context_;
  std::unique_ptr<Routes> routes_;
  int port_ = 0;
};

}  // namespace canvas::app
