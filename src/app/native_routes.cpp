// The native API: jobs (submit, list, status, events, cancel, images, removal from the history), models,
// LoRAs, memory and a cluster's workers.
#include <fstream>
#include <iterator>

#include "app/http_routes.h"
#include "backend/backend.h"
#include "memory/allocator.h"
#include "memory/host_memory.h"

namespace canvas::app {

namespace {

using nlohmann::json;

json entry_json(const HistoryEntry& entry) {
  json status = {{"id", entry.id},
                 {"state", entry.state},
                 {"task", entry.task},
                 {"model", entry.model},
                 {"priority", entry.priority},
                 {"created_at", entry.created_at},
                 {"parameters", entry.parameters},
                 {"report", entry.report}};
  if (entry.started_at > 0) status["started_at"] = entry.started_at;
  if (entry.finished_at > 0) status["finished_at"] = entry.finished_at;
  if (!entry.error.empty()) status["error"] = entry.error;
  status["images"] = json::array();
  for (size_t index = 0; index < entry.outputs.size(); ++index)
    status["images"].push_back({{"url", "/v1/jobs/" + entry.id + "/images/" + std::to_string(index)}});
  return status;
}

// The job's status from the queue, else from the history (a job of an earlier run of the server).
std::optional<json> job_status(ServerContext& context, const std::string& id) {
  if (std::shared_ptr<QueuedJob> job = context.queue.find(id)) return job->status_json();
  if (std::optional<HistoryEntry> entry = context.history.find(id)) return entry_json(*entry);
  return std::nullopt;
}

std::string sse_event(const JobEvent& event) {
  return "id: " + std::to_string(event.sequence) + "\nevent: " + event.type + "\ndata: " + event.data.dump() +
         "\n\n";
}

// Streams the job's events as Server-Sent Events until it ends; a client that reconnects with Last-Event-ID
// picks up after what it saw.
void stream_events(const httplib::Request& request, httplib::Response& response,
                   std::shared_ptr<QueuedJob> job) {
  int64_t after = 0;
  if (request.has_header("Last-Event-ID")) {
    try {
      after = std::stoll(request.get_header_value("Last-Event-ID"));
    } catch (const std::exception&) {
      throw RequestError(400, "Last-Event-ID", "Last-Event-ID must be an event's number");
    }
  }
  auto seen = std::make_shared<int64_t>(after);
  auto quiet_since =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider(
      "text/event-stream", [job, seen, quiet_since](size_t, httplib::DataSink& sink) {
        const std::vector<JobEvent> events = job->events_after(*seen, std::chrono::seconds(1));
        for (const JobEvent& event : events) {
          const std::string text = sse_event(event);
          if (!sink.write(text.data(), text.size())) return false;
          *seen = event.sequence;
        }
        const auto now = std::chrono::steady_clock::now();
        if (!events.empty()) {
          *quiet_since = now;
        } else if (is_final(job->state())) {
          sink.done();
          return true;
        } else if (now - *quiet_since > std::chrono::seconds(15)) {
          // A comment keeps proxies from closing a quiet stream (a long model load).
          const std::string keepalive = ": keepalive\n\n";
          if (!sink.write(keepalive.data(), keepalive.size())) return false;
          *quiet_since = now;
        }
        return sink.is_writable();
      });
}

json memory_json(ServerContext& context) {
  const Device device = context.residency.device();
  Allocator& allocator = allocator_for(device);
  json device_json = {
      {"device", device.str()}, {"in_use_bytes", allocator.in_use()}, {"peak_bytes", allocator.peak()}};
  if (!device.is_cpu()) {
    const auto info = backend_for(device).memory_info();
    device_json["free_bytes"] = info.free_bytes;
    device_json["total_bytes"] = info.total_bytes;
  }
  const HostMemoryInfo host = host_memory_info();
  return {{"device", device_json},
          {"host",
           {{"available_bytes", host.available_bytes},
            {"total_bytes", host.total_bytes},
            {"process_rss_bytes", host.process_rss_bytes},
            {"process_peak_rss_bytes", host.process_peak_rss_bytes}}},
          {"models", context.residency.describe()},
          {"plan", context.residency.live_plan()},
          {"recoveries", context.residency.recent_recoveries()}};
}

}  // namespace

void add_native_routes(httplib::Server& server, ServerContext& context) {
  server.Post("/v1/jobs", [&](const httplib::Request& request, httplib::Response& response) {
    std::shared_ptr<QueuedJob> job = submit_job(context, body_json(request));
    reply_json(response, 202,
               {{"id", job->id()},
                {"state", state_name(job->state())},
                {"url", "/v1/jobs/" + job->id()},
                {"events", "/v1/jobs/" + job->id() + "/events"}});
  });
  server.Get("/v1/jobs", [&](const httplib::Request& request, httplib::Response& response) {
    HistoryQuery query;
    query.limit = 50;
    if (request.has_param("state")) query.state = request.get_param_value("state");
    if (request.has_param("model")) query.model = request.get_param_value("model");
    try {
      if (request.has_param("limit")) query.limit = std::stoi(request.get_param_value("limit"));
      if (request.has_param("offset")) query.offset = std::stoi(request.get_param_value("offset"));
    } catch (const std::exception&) {
      throw RequestError(400, "limit", "limit and offset must be whole numbers");
    }
    if (*query.limit < 1 || *query.limit > 1000 || query.offset < 0)
      throw RequestError(400, "limit", "limit must be from 1 to 1000 and offset 0 or more");
    json jobs = json::array();
    for (const HistoryEntry& entry : context.history.list(query)) {
      std::optional<json> live = job_status(context, entry.id);
      jobs.push_back(live ? *live : entry_json(entry));
    }
    reply_json(response, 200, {{"jobs", jobs}});
  });
  server.Get(R"(/v1/jobs/([0-9a-f]{16}))", [&](const httplib::Request& request, httplib::Response& response) {
    std::optional<json> status = job_status(context, request.matches[1]);
    if (!status) throw RequestError(404, "", "there is no job " + std::string(request.matches[1]));
    reply_json(response, 200, *status);
  });
  server.Get(R"(/v1/jobs/([0-9a-f]{16})/events)",
             [&](const httplib::Request& request, httplib::Response& response) {
               std::shared_ptr<QueuedJob> job = context.queue.find(request.matches[1]);
               if (!job) {
                 std::optional<HistoryEntry> entry = context.history.find(request.matches[1]);
                 if (!entry)
                   throw RequestError(404, "", "there is no job " + std::string(request.matches[1]));
                 // A job of an earlier run: its end is all there is to tell.
                 json data = {{"state", entry->state}};
                 if (!entry->error.empty()) data["error"] = entry->error;
                 response.set_content(sse_event({1, "state", data}), "text/event-stream");
                 return;
               }
               stream_events(request, response, job);
             });
  server.Delete(
      R"(/v1/jobs/([0-9a-f]{16}))", [&](const httplib::Request& request, httplib::Response& response) {
        const std::string id = request.matches[1];
        if (context.queue.cancel(id)) {
          reply_json(response, 200, context.queue.find(id)->status_json());
          return;
        }
        std::optional<json> status = job_status(context, id);
        if (!status) throw RequestError(404, "", "there is no job " + id);
        reply_error(response, 409,
                    "job " + id + " has ended (" + status->value("state", "") + "): nothing to cancel");
      });
  server.Delete(
      R"(/v1/history/([0-9a-f]{16}))", [&](const httplib::Request& request, httplib::Response& response) {
        const std::string id = request.matches[1];
        std::optional<json> status = job_status(context, id);
        if (!status) throw RequestError(404, "", "there is no job " + id);
        const std::string state = status->value("state", "");
        if (state == "queued" || state == "running")
          throw RequestError(409, "", "job " + id + " is " + state + ": cancel it before removing it");
        // The queue lets go of a job once its end is recorded; until then its entry cannot be removed.
        if (context.queue.find(id) && !context.queue.forget(id))
          throw RequestError(409, "", "job " + id + " is ending: try again in a moment");
        if (!context.history.remove(id)) throw RequestError(404, "", "there is no job " + id);
        reply_json(response, 200, {{"id", id}, {"removed", true}});
      });
  server.Get(R"(/v1/jobs/([0-9a-f]{16})/images/(\d{1,3}))", [&](const httplib::Request& request,
                                                                httplib::Response& response) {
    const std::string id = request.matches[1];
    const size_t index = std::stoul(request.matches[2]);
    std::vector<std::string> outputs;
    if (std::shared_ptr<QueuedJob> job = context.queue.find(id)) {
      if (std::optional<JobOutcome> outcome = job->outcome())
        for (const JobImage& image : outcome->images) outputs.push_back(image.path.string());
    } else if (std::optional<HistoryEntry> entry = context.history.find(id)) {
      outputs = entry->outputs;
    }
    if (index >= outputs.size())
      throw RequestError(404, "", "job " + id + " has no image " + std::to_string(index));
    std::ifstream file(outputs[index], std::ios::binary);
    if (!file) throw RequestError(410, "", "the image of job " + id + " is no longer on the server's disk");
    const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    response.set_content(bytes, "image/png");
  });
  server.Get("/v1/models", [&](const httplib::Request&, httplib::Response& response) {
    // Ours under "models"; OpenAI's list shape under "data", which its SDKs' models.list() reads.
    json models = json::array(), data = json::array();
    for (const ModelEntry& entry : context.models.models()) {
      models.push_back({{"id", entry.id},
                        {"pipeline", entry.pipeline_class},
                        {"edits", entry.kind != QwenImagePipelineKind::TextToImage}});
      data.push_back(
          {{"id", entry.id}, {"object", "model"}, {"created", 0}, {"owned_by", "ethereal-canvas"}});
    }
    reply_json(
        response, 200,
        {{"object", "list"}, {"data", data}, {"models", models}, {"skipped", context.models.skipped()}});
  });
  server.Get("/v1/loras", [&](const httplib::Request&, httplib::Response& response) {
    reply_json(response, 200, {{"loras", context.models.loras()}});
  });
  server.Get("/v1/memory", [&](const httplib::Request&, httplib::Response& response) {
    reply_json(response, 200, memory_json(context));
  });
  server.Get("/v1/workers", [&](const httplib::Request&, httplib::Response& response) {
    // A cluster's workers (host, device, models, running job); none when this server runs its jobs alone.
    reply_json(response, 200, {{"workers", context.queue.workers()}});
  });
  server.Get("/v1/health", [&](const httplib::Request&, httplib::Response& response) {
    reply_json(response, 200, {{"ok", true}, {"queued", context.queue.waiting()}});
  });
}

}  // namespace canvas::app
