// What a generated image records about how it was made, so it can be reproduced from the file alone.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/png_image.h"
#include "pipeline/text_to_image.h"
#include "util/cancellation.h"

namespace canvas {

// A file a job read (an edit's picture), as the image records it.
struct InputPicture {
  std::string path;
  int64_t width = 0;  // as read, orientation applied
  int64_t height = 0;
  std::string sha256;  // of the file's bytes
};

// A LoRA a job applied, as the image records it.
struct LoraRecord {
  std::string path;  // as the user gave it
  float strength = 1.0f;
  std::string format;  // the key styles found in it (LoraFile::format)
  int layers = 0;      // the layers it changes
  std::string sha256;  // of the file's bytes
  // Of the bytes after the safetensors header: kohya's LoRA hash, whose first 12 digits A1111 writes in
  // "Lora hashes" (civitai's AutoV3).
  std::string tensors_sha256;
};

// `lora` as the image records it, with both digests of its file. The file is read whole (seconds for a
// large one); throws CancelledError once `cancellation` is requested.
LoraRecord lora_record(const AppliedLora& lora, const Cancellation& cancellation);

struct GenerationRecord {
  std::string task = "text-to-image";  // or "edit"
  std::string model;                   // the path or name the user gave
  std::string device;
  std::string precision;
  TextToImageRequest request;  // the settings as the job ran them (an edit's output size worked out)
  std::vector<InputPicture> inputs;
  std::vector<LoraRecord> loras;  // those of request.sampling.loras, in order
  LoraApply lora_apply = LoraApply::Auto;
  std::optional<std::string> preset;  // the sampling preset the settings came from, e.g. "lightning-4"
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
