// What the server does with a request body once it has read it, for the API fuzz targets: the JSON
// (malformed JSON is refused before any translation, as http_server.cpp's body_json does) and the native
// job the APIs translate into, read as POST /v1/jobs reads it. Refusals are RequestErrors, answered as the
// server answers them; anything else escaping (a crash, or another exception type, which the server would
// answer as an internal error) is a finding.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "app/job_spec.h"

namespace canvas::fuzz {

inline std::optional<nlohmann::json> parse_body(const uint8_t* data, size_t size) {
  nlohmann::json body = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return std::nullopt;
  return body;
}

// parse_job_spec with small limits (the pictures in a request are decoded) and a LoRA folder holding
// every name, and the history's record of what it read.
inline void read_native_job(const nlohmann::json& request) {
  app::JobSpecLimits limits;
  limits.max_image_pixels = int64_t{1} << 20;
  const app::JobSpec spec = app::parse_job_spec(
      request, limits, [](const std::string& name) { return "/loras/" + name + ".safetensors"; });
  app::job_spec_json(spec).dump();
}

// A refusal as the server answers it: a JSON body with the message and the field, which must serialize
// (UTF-8 text) for the client to get its 4xx rather than an internal error.
inline void answer_refusal(const app::RequestError& error) {
  nlohmann::json{{"status", error.status()}, {"message", error.what()}, {"field", error.field()}}.dump();
}

}  // namespace canvas::fuzz
