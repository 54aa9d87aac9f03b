// The OpenAI Images API (POST /v1/images/generations and /v1/images/edits) translated into the native job
// request (app/job_spec.h) and its answer out of a job's outcome, so that clients written for OpenAI (the
// `openai` SDKs, curl examples) run unchanged against `canvas serve`. Pure translations: the HTTP server
// reads the body or the multipart form and calls these.
//
// What the OpenAI fields become:
//   prompt            prompt
//   n                 batch_count
//   size              "WxH": width and height; "auto": neither, so the model or the pictures decide
//   model             model; OpenAI's own names (dall-e-*, gpt-image-*, chatgpt-image-*) mean the server's
//                     default model, any other name is one of ours
//   response_format   not part of the job: openai_response_format reads it
//   image, image[]    edits: the pictures (the SDK sends a list as image[] parts); without a mask: task
//                     "edit", with all of them under "images"
//   mask              edits, with one picture: task "inpaint", "image" and "mask" with "mask_alpha": the
//                     mask's transparent pixels are repainted, as OpenAI's masks are read
// Accepted and ignored, as they mean nothing for a local model: user, safety_identifier, moderation, style,
// input_fidelity, complexity, output_compression, partial_images, and quality when it is one of OpenAI's
// values (low, medium, high, xhigh, max, auto, standard, hd; any other value is the native "quality").
// Accepted at the values that ask for what the server does anyway: background "auto" or "opaque",
// output_format "png", stream false. Refused: svg, frame_count, frame_duration_ms and markup.
// Native fields are accepted under their own names (generations: the sampling and memory-planning ones;
// edits also the mask's handling and the strength), as form fields in edits, whose text is read by the
// field's type. A field given both ways (n and batch_count, size and width or height) is an error, null
// and an empty form field count as absent, and any other field is refused. Errors are RequestError naming
// the OpenAI field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "app/job_outcome.h"

namespace canvas::app {

// One part of a multipart/form-data body.
struct FormPart {
  std::string name;
  std::string filename;  // empty for a plain field
  std::string content_type;
  std::string content;
};

// POST /v1/images/generations (a JSON body) as a native request.
nlohmann::json openai_generation_request(const nlohmann::json& body);

// POST /v1/images/edits (a multipart form) as a native request, the pictures in base64.
nlohmann::json openai_edit_request(const std::vector<FormPart>& parts);

// How the answer carries the images: "b64_json" or "url". Without response_format, "url" for the DALL·E
// models and "b64_json" otherwise, as OpenAI answers.
std::string_view openai_response_format(const nlohmann::json& body);
std::string_view openai_response_format(const std::vector<FormPart>& parts);

// The ImagesResponse of a finished job: {created, data: [{b64_json} or {url}], background, output_format,
// size}. `png_base64` holds each image's PNG in base64 for "b64_json" (it may be empty for "url");
// `base_url` (e.g. "http://host:8000") is put before each image's relative URL.
nlohmann::json openai_images_response(const JobOutcome& outcome, std::string_view response_format,
                                      const std::vector<std::string>& png_base64, const std::string& base_url,
                                      int64_t created);

// OpenAI's error body: {"error": {"message", "type", "param", "code"}}; type is "server_error" for a
// status of 500 and up and "invalid_request_error" otherwise; an empty param is null.
nlohmann::json openai_error(int status, const std::string& message, const std::string& param);

}  // namespace canvas::app
