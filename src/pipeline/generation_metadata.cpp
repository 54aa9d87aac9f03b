#include "pipeline/generation_metadata.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <sstream>

#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "util/sha256.h"

namespace canvas {

namespace {

// The float as the double of its shortest decimal, so that a strength of 0.8 is recorded as 0.8 rather
// than 0.800000011920929.
double as_written(float value) {
  char text[32] = {};  // to_chars writes no terminating zero
  std::to_chars(text, text + sizeof(text) - 1, value);
  return std::strtod(text, nullptr);
}

// The name A1111 gives a LoRA file in the prompt's <lora:NAME:STRENGTH> tags and its hashes: the file stem.
std::string a1111_lora_name(const LoraRecord& lora) {
  return std::filesystem::path(lora.path).stem().string();
}

}  // namespace

LoraRecord lora_record(const AppliedLora& lora, const Cancellation& cancellation) {
  const std::filesystem::path& path = lora.file.path;
  LoraRecord record{
      path.string(), lora.strength, lora.file.format, static_cast<int>(lora.file.updates.size()), {}, {}};
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(file->data()),
                                       static_cast<size_t>(file->size()));
  const size_t header = static_cast<size_t>(SafetensorsFile::open(path).data_offset());
  // One pass over the file for both digests.
  Sha256 whole, tensors;
  whole.update(bytes.first(header));
  constexpr size_t kPiece = size_t{16} << 20;
  for (size_t at = header; at < bytes.size(); at += kPiece) {
    cancellation.throw_if_requested();
    const std::span<const uint8_t> piece = bytes.subspan(at, std::min(kPiece, bytes.size() - at));
    whole.update(piece);
    tensors.update(piece);
  }
  record.sha256 = digest_hex(whole.finish());
  record.tensors_sha256 = digest_hex(tensors.finish());
  return record;
}

nlohmann::json generation_json(const GenerationRecord& record) {
  const TextToImageRequest& request = record.request;
  nlohmann::json json = {
      {"software", "ethereal-canvas"},
      {"version", CANVAS_VERSION},
      {"task", record.task},
      {"model", record.model},
      {"device", record.device},
      {"precision", record.precision},
      {"prompt", request.sampling.prompt},
      {"seed", request.sampling.seed},
      {"steps", request.sampling.steps},
      {"cfg_scale", request.sampling.cfg_scale},
      {"width", request.width},
      {"height", request.height},
      {"scheduler", "FlowMatchEulerDiscreteScheduler"},
  };
  // The edit pipelines encode the whole prompt.
  if (request.max_sequence_length > 0) json["max_sequence_length"] = request.max_sequence_length;
  for (const auto& [key, value] : record.task_settings.items()) json[key] = value;
  for (const InputPicture& input : record.inputs) {
    json["inputs"].push_back(
        {{"path", input.path}, {"width", input.width}, {"height", input.height}, {"sha256", input.sha256}});
  }
  if (request.sampling.negative_prompt) json["negative_prompt"] = *request.sampling.negative_prompt;
  for (const LoraRecord& lora : record.loras) {
    json["loras"].push_back({{"name", std::filesystem::path(lora.path).filename().string()},
                             {"path", lora.path},
                             {"strength", as_written(lora.strength)},
                             {"format", lora.format},
                             {"layers", lora.layers},
                             {"sha256", lora.sha256},
                             {"tensors_sha256", lora.tensors_sha256}});
  }
  if (!record.loras.empty()) json["lora_apply"] = lora_apply_name(record.lora_apply);
  if (request.sampling.scheduler_shift) json["scheduler_shift"] = *request.sampling.scheduler_shift;
  if (record.preset) json["preset"] = *record.preset;
  if (record.result) {
    const JobResult& result = *record.result;
    json["true_cfg"] = result.used_cfg;
    if (result.used_cfg) json["negative_prompt_used"] = result.negative_prompt;
    if (result.prompt_truncated_tokens > 0) json["prompt_truncated_tokens"] = result.prompt_truncated_tokens;
    if (!record.loras.empty()) {
      json["lora_layers"] = result.lora_layers;
      json["lora_layers_merged"] = result.lora_layers_merged;
    }
    nlohmann::json timings = {{"load", record.load_s}, {"total", record.total_s}};
    for (int phase = 0; phase < kJobPhases; ++phase) {
      const JobPhase each = static_cast<JobPhase>(phase);
      // A text-to-image job runs no vision or VAE encoding.
      if (each == JobPhase::Plan || result.timings.of(each) > 0.0)
        timings[std::string(phase_name(each))] = result.timings.of(each);
    }
    timings["per_step"] = result.timings.step_s;
    json["timings_s"] = timings;
    json["memory_plan"] = result.plan.to_json();
    json["memory"] = {{"device_peak_bytes", record.device_peak_bytes},
                      {"host_peak_rss_bytes", record.host_peak_rss_bytes},
                      {"transformer_bytes_streamed", result.bytes_streamed},
                      {"transformer_page_locked_bytes", result.page_locked_bytes}};
    if (!record.profile_summary.empty()) json["profile_summary"] = record.profile_summary;
    if (!result.recoveries.empty()) json["recoveries"] = result.recoveries;
  }
  return json;
}

std::string a1111_parameters(const GenerationRecord& record) {
  const TextToImageRequest& request = record.request;
  std::ostringstream text;
  // A1111 applies LoRAs named by tags in the prompt, and writes them there.
  text << request.sampling.prompt;
  for (const LoraRecord& lora : record.loras)
    text << " <lora:" << a1111_lora_name(lora) << ":" << lora.strength << ">";
  text << "\n";
  if (record.result && record.result->used_cfg)
    text << "Negative prompt: " << record.result->negative_prompt << "\n";
  text << "Steps: " << request.sampling.steps << ", Sampler: Euler (flow match)";
  if (request.sampling.scheduler_shift) text << ", Schedule shift: " << *request.sampling.scheduler_shift;
  text << ", CFG scale: " << request.sampling.cfg_scale << ", Seed: " << request.sampling.seed
       << ", Size: " << request.width << "x" << request.height << ", Model: " << record.model;
  if (!record.loras.empty()) {
    std::string hashes;
    for (const LoraRecord& lora : record.loras) {
      // As A1111 writes them: the name without its separators, the first 12 digits of the tensors' digest.
      std::string name = a1111_lora_name(lora);
      std::erase_if(name, [](char c) { return c == ':' || c == ','; });
      hashes += (hashes.empty() ? "" : ", ") + name + ": " + lora.tensors_sha256.substr(0, 12);
    }
    // Quoted, as A1111 quotes a value holding its separators.
    text << ", Lora hashes: "
         << nlohmann::json(hashes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (record.preset) text << ", Preset: " << *record.preset;
  text << ", Version: ethereal-canvas " << CANVAS_VERSION;
  return text.str();
}

std::vector<PngTextChunk> generation_text_chunks(const GenerationRecord& record) {
  // Text the user typed need not be valid UTF-8: invalid bytes are stored as U+FFFD rather than failing
  // the write of a finished image.
  return {{"parameters", a1111_parameters(record)},
          {"canvas", generation_json(record).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
}

}  // namespace canvas
