// A model folder's JSON files: model_index.json (as the model folder's only file), a sharded checkpoint's
// *.safetensors.index.json, and every network's config.json, read from the same bytes. A config file
// that reads is one the model can be built from, or it is refused with a canvas::Error naming the key.
#include <cstdint>

#include "fuzz_input.h"
#include "io/json_config.h"
#include "io/model_layout.h"
#include "io/weight_source.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_model.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "util/error.h"

namespace {

template <typename Read>
void refused_or_read(Read read) {
  try {
    read();
  } catch (const canvas::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path folder = canvas::fuzz::scratch_folder() / "model";
  std::filesystem::create_directories(folder);
  const std::filesystem::path config = canvas::fuzz::write_input(data, size, "model/model_index.json");
  refused_or_read([&] { canvas::resolve_model(folder); });

  const std::filesystem::path index = canvas::fuzz::write_input(data, size, "model.safetensors.index.json");
  refused_or_read([&] { canvas::WeightSource::open_index(index); });

  nlohmann::json json;
  try {
    json = canvas::read_json_file(config);
  } catch (const canvas::Error&) {
    return 0;
  }
  const std::string name = config.string();
  refused_or_read([&] { canvas::QwenImageTransformerConfig::from_json(json, name); });
  refused_or_read([&] { canvas::AutoencoderKLQwenImageConfig::from_json(json, name); });
  refused_or_read([&] { canvas::Qwen2_5_VLConfig::from_json(json, name); });
  refused_or_read([&] { canvas::FlowMatchSchedulerConfig::from_json(json, config); });
  refused_or_read([&] { canvas::Qwen2VLImageProcessorConfig::from_json(json, name); });
  return 0;
}
