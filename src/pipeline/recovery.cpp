#include "pipeline/recovery.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "planning/machine_profile.h"
#include "util/error.h"
#include "util/json_cache.h"

namespace canvas {

namespace {

using json = nlohmann::json;

constexpr const char* kMemoryFile = "recoveries.json";

void cap_resident_blocks(ComponentPlan& part, std::optional<int> cap) {
  if (!cap || part.residency == Residency::Mapped || part.resident_blocks <= *cap) return;
  const int blocks = part.resident_blocks + part.streamed_blocks;
  part.residency = Residency::Offloaded;
  part.resident_blocks = std::max(0, *cap);
  part.streamed_blocks = blocks - part.resident_blocks;
  part.slots = std::max(part.slots, 2);
}

WeightPrecision parse_precision(const std::string& name) {
  for (WeightPrecision precision : {WeightPrecision::Lossless, WeightPrecision::Fp8, WeightPrecision::Nf4})
    if (precision_name(precision) == name) return precision;
  throw Error("unknown weight precision '" + name + "'");
}

std::mutex& memory_mutex() {
  static std::mutex mutex;
  return mutex;
}

// Degradations of this process when there is no cache directory.
std::map<std::string, Degradation>& process_memory() {
  static std::map<std::string, Degradation> remembered;
  return remembered;
}

}  // namespace

bool Degradation::any() const {
  return *this != Degradation{};
}

std::vector<std::string> Degradation::describe() const {
  std::vector<std::string> lines;
  if (vision_encoder_resident_blocks) {
    lines.push_back("vision_encoder: at most " + std::to_string(*vision_encoder_resident_blocks) +
                    " blocks on the device");
  }
  if (text_encoder_resident_blocks) {
    lines.push_back("text_encoder: at most " + std::to_string(*text_encoder_resident_blocks) +
                    " layers on the device");
  }
  if (transformer_resident_blocks) {
    lines.push_back("transformer: at most " + std::to_string(*transformer_resident_blocks) +
                    " blocks on the device");
  }
  if (feed_forward_chunk > 0)
    lines.push_back("transformer: feed-forward in chunks of " + std::to_string(feed_forward_chunk) +
                    " tokens");
  if (transformer_precision != WeightPrecision::Lossless)
    lines.push_back("transformer: " + std::string(precision_name(transformer_precision)) + " weights");
  if (vae_encode_tiling) lines.push_back("vae: tiled encode");
  if (vae_decode_tiling) lines.push_back("vae: tiled decode");
  if (vae_on_cpu) lines.push_back("vae: runs on the CPU");
  return lines;
}

json Degradation::to_json() const {
  json out = json::object();
  if (vision_encoder_resident_blocks) out["vision_encoder_resident_blocks"] = *vision_encoder_resident_blocks;
  if (text_encoder_resident_blocks) out["text_encoder_resident_blocks"] = *text_encoder_resident_blocks;
  if (transformer_resident_blocks) out["transformer_resident_blocks"] = *transformer_resident_blocks;
  if (feed_forward_chunk > 0) out["feed_forward_chunk"] = feed_forward_chunk;
  if (transformer_precision != WeightPrecision::Lossless)
    out["transformer_precision"] = precision_name(transformer_precision);
  if (vae_encode_tiling) out["vae_encode_tiling"] = true;
  if (vae_decode_tiling) out["vae_decode_tiling"] = true;
  if (vae_on_cpu) out["vae_on_cpu"] = true;
  return out;
}

Degradation Degradation::from_json(const json& in) {
  check(in.is_object(), "a remembered recovery must be a JSON object");
  Degradation degradation;
  try {
    if (in.contains("vision_encoder_resident_blocks"))
      degradation.vision_encoder_resident_blocks = in.at("vision_encoder_resident_blocks").get<int>();
    if (in.contains("text_encoder_resident_blocks"))
      degradation.text_encoder_resident_blocks = in.at("text_encoder_resident_blocks").get<int>();
    if (in.contains("transformer_resident_blocks"))
      degradation.transformer_resident_blocks = in.at("transformer_resident_blocks").get<int>();
    degradation.feed_forward_chunk = in.value("feed_forward_chunk", int64_t{0});
    if (in.contains("transformer_precision"))
      degradation.transformer_precision = parse_precision(in.at("transformer_precision").get<std::string>());
    degradation.vae_encode_tiling = in.value("vae_encode_tiling", false);
    degradation.vae_decode_tiling = in.value("vae_decode_tiling", false);
    degradation.vae_on_cpu = in.value("vae_on_cpu", false);
  } catch (const json::exception& error) {
    throw Error(std::string("malformed remembered recovery: ") + error.what());
  }
  check(degradation.feed_forward_chunk >= 0 && degradation.vision_encoder_resident_blocks.value_or(0) >= 0 &&
            degradation.text_encoder_resident_blocks.value_or(0) >= 0 &&
            degradation.transformer_resident_blocks.value_or(0) >= 0,
        "malformed remembered recovery: negative sizes");
  return degradation;
}

std::optional<VaeTiling> vae_encode_tiling(const Degradation& degradation) {
  if (!degradation.vae_encode_tiling) return std::nullopt;
  return VaeTiling{};
}

void apply_degradation(const Degradation& degradation, MemoryPlan& plan) {
  // Only editing jobs plan a vision encoder.
  if (ComponentPlan* vision = plan.find(Component::VisionEncoder))
    cap_resident_blocks(*vision, degradation.vision_encoder_resident_blocks);
  cap_resident_blocks(plan.component(Component::TextEncoder), degradation.text_encoder_resident_blocks);
  ComponentPlan& transformer = plan.component(Component::Transformer);
  cap_resident_blocks(transformer, degradation.transformer_resident_blocks);
  if (degradation.transformer_precision > transformer.precision)
    transformer.precision = degradation.transformer_precision;
  if (degradation.vae_on_cpu) {
    ComponentPlan on_cpu;
    on_cpu.component = Component::Vae;
    on_cpu.residency = Residency::Mapped;
    plan.component(Component::Vae) = on_cpu;
  }
}

std::optional<Degradation> RecoveryMemory::recall(const std::string& key) {
  std::lock_guard lock(memory_mutex());
  const std::filesystem::path dir = canvas_cache_dir();
  if (dir.empty()) {
    auto found = process_memory().find(key);
    return found == process_memory().end() ? std::nullopt : std::optional(found->second);
  }
  json remembered = read_json_cache(dir / kMemoryFile);
  if (!remembered.contains(key)) return std::nullopt;
  try {
    return Degradation::from_json(remembered.at(key));
  } catch (const Error&) {
    return std::nullopt;
  }
}

bool RecoveryMemory::remember(const std::string& key, const Degradation& degradation) {
  std::lock_guard lock(memory_mutex());
  const std::filesystem::path dir = canvas_cache_dir();
  if (dir.empty()) {
    if (degradation.any()) {
      process_memory()[key] = degradation;
    } else {
      process_memory().erase(key);
    }
    return true;
  }
  json remembered = read_json_cache(dir / kMemoryFile);
  if (degradation.any()) {
    remembered[key] = degradation.to_json();
  } else if (remembered.contains(key)) {
    remembered.erase(key);
  } else {
    return true;
  }
  return write_json_cache(dir / kMemoryFile, remembered);
}

bool RecoveryMemory::forget(const std::string& key) {
  return remember(key, Degradation{});
}

}  // namespace canvas
