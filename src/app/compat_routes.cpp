// The OpenAI Images API and the A1111 web API over the native queue: each request is translated
// (app/openai_api.h, app/a1111_api.h), queued as a native job and answered once it ends, as those APIs
// answer synchronously.
#include <ctime>

#include "app/a1111_api.h"
#include "app/http_routes.h"
#include "app/openai_api.h"

namespace canvas::app {

namespace {

using nlohmann::json;

// The running job, if any.
std::shared_ptr<QueuedJob> running_job(JobBoard& queue) {
  for (const std::shared_ptr<QueuedJob>& job : queue.jobs())
    if (job->state() == JobState::Running) return job;
  return nullptr;
}

std::vector<FormPart> form_parts(const httplib::Request& request) {
  std::vector<FormPart> parts;
  for (const auto& [name, file] : request.files)
    parts.push_back({name, file.filename, file.content_type, file.content});
  return parts;
}

// "http://HOST" as the client reached the server, for OpenAI's image URLs.
std::string base_url(const httplib::Request& request) {
  const std::string host = request.get_header_value("Host");
  return "http://" + (host.empty() ? std::string("127.0.0.1") : host);
}

// A1111's model title of each entry, the way its clients pick one.
std::vector<A1111Model> a1111_models(const ModelRegistry& models) {
  std::vector<A1111Model> listed;
  for (const ModelEntry& entry : models.models())
    listed.push_back({entry.id, entry.path.string(), std::nullopt});
  return listed;
}

// The model A1111's options name (POST /sdapi/v1/options switches it, as it does in A1111).
struct A1111State {
  std::mutex mutex;
  std::string checkpoint;  // a model id; empty for the server's first
};

void reply_a1111_error(httplib::Response& response, const RequestError& error) {
  // FastAPI's error body, which A1111 clients print, with the field beside it.
  reply_json(response, error.status(),
             {{"error", "RequestError"}, {"detail", error.what()}, {"field", error.field()}});
}

}  // namespace

void add_openai_routes(httplib::Server& server, ServerContext& context) {
  auto answer = [&context](const httplib::Request& request, httplib::Response& response, const json& native,
                           std::string_view format) {
    std::shared_ptr<QueuedJob> job = submit_job(context, native);
    const JobOutcome outcome = wait_for_outcome(*job);
    const std::vector<std::string> encoded =
        format == "b64_json" ? images_base64(outcome) : std::vector<std::string>{};
    reply_json(response, 200,
               openai_images_response(outcome, format, encoded, base_url(request),
                                      static_cast<int64_t>(std::time(nullptr))));
  };
  server.Post(
      "/v1/images/generations", [answer](const httplib::Request& request, httplib::Response& response) {
        try {
          const json body = body_json(request);
          answer(request, response, openai_generation_request(body), openai_response_format(body));
        } catch (const RequestError& error) {
          reply_json(response, error.status(), openai_error(error.status(), error.what(), error.field()));
        }
      });
  server.Post("/v1/images/edits", [answer](const httplib::Request& request, httplib::Response& response) {
    try {
      if (!request.is_multipart_form_data())
        throw RequestError(400, "",
                           "/v1/images/edits takes a multipart/form-data body, as the OpenAI SDK sends it");
      const std::vector<FormPart> parts = form_parts(request);
      answer(request, response, openai_edit_request(parts), openai_response_format(parts));
    } catch (const RequestError& error) {
      reply_json(response, error.status(), openai_error(error.status(), error.what(), error.field()));
    }
  });
}

void add_a1111_routes(httplib::Server& server, ServerContext& context) {
  auto state = std::make_shared<A1111State>();
  // The request as native, its model the options' checkpoint unless it overrides it.
  auto run = [&context, state](const httplib::Request& request, httplib::Response& response,
                               json (*translate)(const json&)) {
    try {
      const json body = body_json(request);
      json native = translate(body);
      if (!native.contains("model")) {
        std::lock_guard lock(state->mutex);
        if (!state->checkpoint.empty()) native["model"] = state->checkpoint;
      }
      std::shared_ptr<QueuedJob> job = submit_job(context, native);
      const JobOutcome outcome = wait_for_outcome(*job);
      reply_json(response, 200, a1111_images_response(body, outcome, images_base64(outcome)));
    } catch (const RequestError& error) {
      reply_a1111_error(response, error);
    }
  };
  server.Post("/sdapi/v1/txt2img", [run](const httplib::Request& request, httplib::Response& response) {
    run(request, response, a1111_txt2img_request);
  });
  server.Post("/sdapi/v1/img2img", [run](const httplib::Request& request, httplib::Response& response) {
    run(request, response, a1111_img2img_request);
  });
  server.Get("/sdapi/v1/progress", [&context](const httplib::Request&, httplib::Response& response) {
    A1111Progress progress;
    if (std::shared_ptr<QueuedJob> job = running_job(context.queue)) {
      progress.job = job->spec().task == JobTask::Generate ? "txt2img" : "img2img";
      const std::time_t started = static_cast<std::time_t>(job->started_at());
      char stamp[16];
      std::strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", std::localtime(&started));
      progress.job_timestamp = stamp;
      progress.job_count = job->spec().batch_count;
      progress.elapsed_seconds = unix_now() - job->started_at();
      progress.interrupted = job->cancellation().requested();
      if (std::optional<JobEvent> step = job->last_event("step")) {
        progress.job_no = step->data.value("image", 1) - 1;
        progress.sampling_step = step->data.value("step", 0);
        progress.sampling_steps = step->data.value("steps", 0);
      }
      if (std::optional<JobEvent> preview = job->last_event("preview"))
        progress.current_image = preview->data.value("png_base64", "");
    }
    reply_json(response, 200, a1111_progress(progress));
  });
  server.Post("/sdapi/v1/interrupt", [&context](const httplib::Request&, httplib::Response& response) {
    if (std::shared_ptr<QueuedJob> job = running_job(context.queue)) context.queue.cancel(job->id());
    reply_json(response, 200, json::object());
  });
  server.Get("/sdapi/v1/sd-models", [&context](const httplib::Request&, httplib::Response& response) {
    reply_json(response, 200, a1111_sd_models(a1111_models(context.models)));
  });
  server.Get("/sdapi/v1/samplers", [](const httplib::Request&, httplib::Response& response) {
    reply_json(response, 200, a1111_samplers());
  });
  server.Get("/sdapi/v1/options", [&context, state](const httplib::Request&, httplib::Response& response) {
    std::string id;
    {
      std::lock_guard lock(state->mutex);
      id = state->checkpoint;
    }
    const ModelEntry entry = context.models.find(id);
    reply_json(response, 200, a1111_options({entry.id, entry.path.string(), std::nullopt}));
  });
  server.Post("/sdapi/v1/options", [&context, state](const httplib::Request& request,
                                                     httplib::Response& response) {
    try {
      const json body = body_json(request);
      if (!body.is_object()) throw RequestError(400, "", "the options must be a JSON object");
      if (body.contains("sd_model_checkpoint")) {
        if (!body["sd_model_checkpoint"].is_string())
          throw RequestError(400, "sd_model_checkpoint", "sd_model_checkpoint must be a model's title");
        const std::string id =
            context.models.find(a1111_checkpoint_model(body["sd_model_checkpoint"].get<std::string>())).id;
        std::lock_guard lock(state->mutex);
        state->checkpoint = id;
      }
      reply_json(response, 200, json::object());
    } catch (const RequestError& error) {
      reply_a1111_error(response, error);
    }
  });
}

}  // namespace canvas::app
