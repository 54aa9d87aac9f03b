// What one request to the server asks for, read from the native API's JSON (POST /v1/jobs) with every field
// the command line has, under the same names with underscores (--cfg-scale is "cfg_scale"). The OpenAI and
// A1111 APIs translate their requests into this JSON (app/openai_api.h, app/a1111_api.h), so every API
// checks fields the same way.
//
// The fields (only "prompt" is required, and "image" for img2img and inpaint, "images" for edit):
//   task            "generate" (default), "img2img", "inpaint" or "edit"; inpaint runs edit-inpainting on
//                   an edit model, and outpainting with "outpaint"
//   model           a model id of GET /v1/models (default: the server's first)
//   prompt, negative_prompt, cfg_scale, steps, seed (-1 or absent draws one), width, height
//   batch_count     images made one after another with seeds counting up (default 1)
//   loras           ["name:strength", ...] or [{"name": ..., "strength": ...}], names of files in the
//                   server's LoRA folder
//   lora_apply, scheduler_shift, preset ("lightning-4", "lightning-8"), strategy, quality, priority
//   image           a picture, as base64 (a data: URL too): img2img's and inpainting's source
//   images          [picture, ...]: edit's pictures, in the prompt's order
//   mask            a picture: white is repainted
//   mask_alpha      true: the mask's transparent pixels are repainted (OpenAI's masks), not its white ones
//   mask_from_alpha, invert_mask, mask_blur, padding_mask_crop, strength, text_positions
//   outpaint        [left, top, right, bottom] margins in pixels
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "pipeline/memory_options.h"
#include "pipeline/request.h"
#include "util/error.h"

namespace canvas::app {

// A request refused before it runs: the HTTP status (400 a malformed or invalid field, 404 an unknown
// model or LoRA, 413 too large) and the field it is about ("" for the request as a whole).
class RequestError : public Error {
 public:
  RequestError(int status, std::string field, const std::string& message)
      : Error(message), status_(status), field_(std::move(field)) {}
  int status() const { return status_; }
  const std::string& field() const { return field_; }

 private:
  int status_;
  std::string field_;
};

enum class JobTask { Generate, Img2Img, Inpaint, Edit };
std::string_view task_name(JobTask task);  // "generate", "img2img", "inpaint", "edit"

// A picture a job reads: its pixels and what the image's metadata and the history record of it.
struct InputImage {
  std::string name;  // the file's path (the command line) or the request's field ("images[1]")
  DecodedImage decoded;
  std::string sha256;  // of the file's bytes
};

// Limits a server puts on what one request may ask.
struct JobSpecLimits {
  int64_t max_image_pixels = 4096 * 4096;  // of each uploaded picture, checked from its header
  int max_batch_count = 16;
  int max_steps = 200;
};

struct JobSpec {
  JobTask task = JobTask::Generate;
  std::string model;          // the model's id; empty for the server's default
  SamplingSettings sampling;  // a seed of -1 or none is drawn when parsed
  std::optional<std::string> preset;
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  int batch_count = 1;
  std::vector<InputImage> images;  // img2img and inpaint: one; edit: one or more
  std::optional<InputImage> mask;
  bool mask_alpha = false;  // the mask is its picture's transparency (image/mask.h mask_from_alpha)
  bool mask_from_alpha = false;
  bool invert_mask = false;
  float mask_blur = 0.0f;
  std::optional<int64_t> padding_mask_crop;
  std::optional<OutpaintMargins> outpaint;
  std::optional<double> strength;  // default 0.6, 1 when outpainting
  TextPositions text_positions = TextPositions::MRope;
  std::string strategy = "auto";
  std::string quality = "lossless";
  LoraApply lora_apply = LoraApply::Auto;
  int priority = 0;  // higher runs first; equal priorities in the order they came
};

// Reads a native API request. `lora_path` turns a LoRA's name into its file, throwing RequestError (404)
// for a name the server does not have. Throws RequestError naming the field for anything malformed,
// missing, of the wrong type, out of range or unknown (a misspelled field is an error, not ignored).
JobSpec parse_job_spec(const nlohmann::json& body, const JobSpecLimits& limits,
                       const std::function<std::string(const std::string& name)>& lora_path);

// The request as the history records it: every setting, the pictures by SHA-256 and size.
nlohmann::json job_spec_json(const JobSpec& spec);

}  // namespace canvas::app
