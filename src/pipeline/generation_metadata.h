// What a generated image records about how it was made, so it can be reproduced from the file alone.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/png_image.h"
#include "pipeline/text_to_image.h"

namespace canvas {

// A file a job read (an edit's picture), as the image records it.
struct InputPicture {
  std::string path;
  int64_t width = 0;  // as read, orientation applied
  int64_t height = 0;
  std::string sha256;  // of the file's bytes
};

struct GenerationRecord {
  std::string task = "text-to-image";  // or "edit"
  std::string model;                   // the path or name the user gave
  std::string device;
  std::string precision;
  TextToImageRequest request;  // the settings as the job ran them (an edit's output size worked out)
  std::vector<InputPicture> inputs;
  nlohmann::json task_settings = nlohmann::json::object();  // the task's own, e.g. an edit's text positions
  JobResult const* result = nullptr;
  double load_s = 0;
  double total_s = 0;
  int64_t device_peak_bytes = 0;  // the device allocator's peak over the job
  int64_t host_peak_rss_bytes = 0;
  std::vector<std::string> profile_summary;  // when the job was profiled
};

// Every setting and timing, as JSON (stored in the "canvas" chunk).
nlohmann::json generation_json(const GenerationRecord& record);
// The A1111-style "parameters" text that other tools (ComfyUI, A1111, civitai) read.
std::string a1111_parameters(const GenerationRecord& record);
// Both chunks, ready for write_png.
std::vector<PngTextChunk> generation_text_chunks(const GenerationRecord& record);

}  // namespace canvas
