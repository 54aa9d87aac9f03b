// The config files of each Qwen-Image component as published, with the sizes a test may shrink.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace canvas::synthetic {

// Qwen-Image's attention heads are 128 wide: the rotary axes (16, 56, 56) in the transformer and the
// M-RoPE sections (16, 24, 24) pairs in the text encoder both span 128.
constexpr int64_t kHeadDim = 128;

// The published folder a synthetic checkpoint imitates.
enum class SyntheticPipeline {
  TextToImage,  // Qwen-Image-2512 (QwenImagePipeline)
  EditPlus,     // Qwen-Image-Edit-2511 (QwenImageEditPlusPipeline): also a processor/ and the vision tower
};

struct ComponentSizes {
  int64_t transformer_layers = 60;
  int64_t transformer_heads = 24;
  int64_t text_layers = 28;
  int64_t text_heads = 28;
  int64_t vae_base_dim = 96;

  int64_t text_hidden_size() const { return text_heads * kHeadDim; }
};

nlohmann::json model_index_json(SyntheticPipeline pipeline);
nlohmann::json scheduler_config_json();
// Qwen-Image-Edit-2511's transformer differs from Qwen-Image-2512's only in zero_cond_t: its reference
// images' tokens are modulated with timestep 0.
nlohmann::json transformer_config_json(const ComponentSizes& sizes, SyntheticPipeline pipeline);
// The flat layout of the published Qwen-Image text_encoder/config.json (Qwen2.5-VL-7B-Instruct).
nlohmann::json text_encoder_config_json(const ComponentSizes& sizes);
nlohmann::json vae_config_json(const ComponentSizes& sizes);
// processor/preprocessor_config.json of Qwen-Image-Edit-2511: the Qwen2-VL image processor's settings.
nlohmann::json preprocessor_config_json();

}  // namespace canvas::synthetic
