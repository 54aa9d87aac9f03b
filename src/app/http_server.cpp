#include "app/http_server.h"

#include <arpa/inet.h>

#include <fstream>
#include <iterator>

#include "app/http_routes.h"
#include "app/prepared_job.h"
#include "app/web_assets.h"
#include "util/base64.h"

namespace canvas::app {

struct HttpServer::Routes {
  httplib::Server server;
};

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

void reply_json(httplib::Response& response, int status, const nlohmann::json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "application/json");
}

void reply_error(httplib::Response& response, int status, const std::string& message,
                 const std::string& field) {
  nlohmann::json error = {{"status", status}, {"message", message}};
  if (!field.empty()) error["field"] = field;
  reply_json(response, status, {{"error", error}});
}

nlohmann::json body_json(const httplib::Request& request) {
  try {
    return nlohmann::json::parse(request.body);
  } catch (const nlohmann::json::parse_error& error) {
    throw RequestError(400, "", std::string("the body is not valid JSON: ") + error.what());
  }
}

std::shared_ptr<QueuedJob> submit_job(ServerContext& context, const nlohmann::json& request) {
  JobSpec spec = parse_job_spec(request, context.settings.limits, [&](const std::string& name) {
    return context.models.lora_path(name).string();
  });
  const ModelEntry model = context.models.find(spec.model);
  spec.model = model.id;
  // A request the model cannot run is refused now, not after waiting its turn.
  try {
    prepare_job(spec, *model.configs);
  } catch (const RequestError&) {
    throw;
  } catch (const Error& error) {
    throw RequestError(400, "", error.what());
  }
  // As the job will run: with the seed drawn here, on the model it resolved to.
  nlohmann::json resolved = request;
  resolved["model"] = spec.model;
  resolved["seed"] = spec.sampling.seed;
  return context.queue.submit(std::move(spec), resolved);
}

JobOutcome wait_for_outcome(const QueuedJob& job) {
  int64_t seen = 0;
  for (;;) {
    const std::vector<JobEvent> events = job.events_after(seen, std::chrono::seconds(1));
    if (!events.empty()) seen = events.back().sequence;
    const JobState state = job.state();
    if (state == JobState::Done) return *job.outcome();
    if (state == JobState::Failed) throw RequestError(500, "", "the job failed: " + job.error());
    if (state == JobState::Cancelled) throw RequestError(499, "", "the job was cancelled");
  }
}

std::vector<std::string> images_base64(const JobOutcome& outcome) {
  std::vector<std::string> encoded;
  for (const JobImage& image : outcome.images) {
    std::ifstream file(image.path, std::ios::binary);
    check(file.good(), "the job's image " + image.path.string() + " cannot be read");
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                     std::istreambuf_iterator<char>());
    encoded.push_back(base64_encode(bytes));
  }
  return encoded;
}

HttpServer::HttpServer(ServerContext context)
    : context_(std::move(context)), routes_(std::make_unique<Routes>()) {
  const ServerSettings& settings = context_.settings;
  check(is_loopback(settings.host) || settings.token,
        "serving on " + settings.host +
            " lets other machines in: give --token (clients then send \"Authorization: Bearer TOKEN\"), or "
            "serve on 127.0.0.1");
  httplib::Server& server = routes_->server;
  const int threads = settings.http_threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server.set_payload_max_length(settings.max_body_bytes);
  if (settings.token) {
    const std::string expected = "Bearer " + *settings.token;
    server.set_pre_routing_handler([expected](const httplib::Request& request, httplib::Response& response) {
      if (request.get_header_value("Authorization") == expected ||
          (request.method == "GET" && web_asset_for(request.path)))
        return httplib::Server::HandlerResponse::Unhandled;
      response.set_header("WWW-Authenticate", "Bearer");
      reply_error(response, 401,
                  "this server needs \"Authorization: Bearer TOKEN\" (the token it was started with)");
      return httplib::Server::HandlerResponse::Handled;
    });
  }
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr thrown) {
        try {
          std::rethrow_exception(thrown);
        } catch (const RequestError& error) {
          reply_error(response, error.status(), error.what(), error.field());
        } catch (const std::exception& error) {
          reply_error(response, 500, error.what());
        } catch (...) {
          reply_error(response, 500, "unknown error");
        }
      });
  server.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    // Routes that answered with their own body keep it.
    if (!response.body.empty()) return;
    if (response.status == 413) {
      reply_error(response, 413, "the request is larger than the server's limit");
    } else if (response.status == 404) {
      reply_error(response, 404, "no such endpoint: " + request.method + " " + request.path);
    } else {
      reply_error(response, response.status, "HTTP " + std::to_string(response.status));
    }
  });
  add_native_routes(server, context_);
  add_openai_routes(server, context_);
  add_a1111_routes(server, context_);
  add_web_routes(server);
  if (settings.port == 0) {
    port_ = server.bind_to_any_port(settings.host);
    check(port_ > 0, "cannot listen on " + settings.host + ": not an address of this machine");
  } else {
    check(server.bind_to_port(settings.host, settings.port),
          "cannot listen on " + settings.host + ":" + std::to_string(settings.port) +
              ": the port is in use or the address is not this machine's");
    port_ = settings.port;
  }
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::run() {
  routes_->server.listen_after_bind();
}

void HttpServer::stop() {
  routes_->server.stop();
}

}  // namespace canvas::app
