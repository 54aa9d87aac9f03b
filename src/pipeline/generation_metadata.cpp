#include "pipeline/generation_metadata.h"

#include <sstream>

namespace canvas {

nlohmann::json generation_json(const GenerationRecord& record) {
  const TextToImageRequest& request = record.request;
  nlohmann::json json = {
      {"software", "ethereal-canvas"},
      {"version", CANVAS_VERSION},
      {"task", record.task},
      {"model", record.model},
      {"device", record.device},
      {"precision", record.precision},
      {"prompt", request.prompt},
      {"seed", request.seed},
      {"steps", request.steps},
      {"cfg_scale", request.cfg_scale},
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
  if (request.negative_prompt) json["negative_prompt"] = *request.negative_prompt;
  if (record.result) {
    const JobResult& result = *record.result;
    json["true_cfg"] = result.used_cfg;
    if (result.used_cfg) json["negative_prompt_used"] = result.negative_prompt;
    if (result.prompt_truncated_tokens > 0) json["prompt_truncated_tokens"] = result.prompt_truncated_tokens;
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
                      {"transformer_bytes_streamed", result.bytes_streamed}};
    if (!record.profile_summary.empty()) json["profile_summary"] = record.profile_summary;
    if (!result.recoveries.empty()) json["recoveries"] = result.recoveries;
  }
  return json;
}

std::string a1111_parameters(const GenerationRecord& record) {
  const TextToImageRequest& request = record.request;
  std::ostringstream text;
  text << request.prompt << "\n";
  if (record.result && record.result->used_cfg)
    text << "Negative prompt: " << record.result->negative_prompt << "\n";
  text << "Steps: " << request.steps << ", Sampler: Euler (flow match), CFG scale: " << request.cfg_scale
       << ", Seed: " << request.seed << ", Size: " << request.width << "x" << request.height
       << ", Model: " << record.model << ", Version: ethereal-canvas " << CANVAS_VERSION;
  return text.str();
}

std::vector<PngTextChunk> generation_text_chunks(const GenerationRecord& record) {
  // Text the user typed need not be valid UTF-8: invalid bytes are stored as U+FFFD rather than failing
  // the write of a finished image.
  return {{"parameters", a1111_parameters(record)},
          {"canvas", generation_json(record).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
}

}  // namespace canvas
