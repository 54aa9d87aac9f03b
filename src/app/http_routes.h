// What the route files of the HTTP server share (app/http_server.cpp, native_routes.cpp,
// compat_routes.cpp, web_routes.cpp). Only they include cpp-httplib.
#pragma once

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "app/http_server.h"

namespace canvas::app {

void reply_json(httplib::Response& response, int status, const nlohmann::json& body);
// The native API's error body: {"error": {"status", "message", "field"}}.
void reply_error(httplib::Response& response, int status, const std::string& message,
                 const std::string& field = "");

// The request's body as JSON; throws RequestError (400) when it is not.
nlohmann::json body_json(const httplib::Request& request);

// Checks and queues a native request (its model resolved to an id); throws RequestError.
std::shared_ptr<QueuedJob> submit_job(ServerContext& context, const nlohmann::json& request);
// Waits for the job to end (the synchronous OpenAI and A1111 calls). Throws RequestError (500 for a failed
// job, 499 for a cancelled one) unless it is done.
JobOutcome wait_for_outcome(const QueuedJob& job);
// The base64 of each of the outcome's PNG files.
std::vector<std::string> images_base64(const JobOutcome& outcome);

void add_native_routes(httplib::Server& server, ServerContext& context);
void add_openai_routes(httplib::Server& server, ServerContext& context);
void add_a1111_routes(httplib::Server& server, ServerContext& context);
// The web UI's files (app/web_assets.h); they need no token, since a browser cannot send one for a page.
void add_web_routes(httplib::Server& server);

}  // namespace canvas::app
