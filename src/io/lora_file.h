// Reading LoRA files: one .safetensors file in any of the key styles Qwen-Image LoRAs are published in,
// normalized to one update per target module (a diffusers/transformers module path inside one network).
//
// Key styles (the stem before the tensor suffix):
//   "diffusers"  transformer.<dotted path>, text_encoder.<dotted path>   (diffusers save_lora_weights)
//   "plain"      <dotted path>                                         (lightx2v Lightning, PEFT model saves)
//   "comfyui"    diffusion_model.<dotted path>
//   "kohya"      lora_unet_<flattened path>, lora_te_ / lora_te1_<flattened path>
//   "lycoris"    lycoris_<flattened path>                               (SimpleTuner)
// Tensor suffixes: .lora_down.weight / .lora_up.weight, .lora_A[.default].weight / .lora_B[.default].weight,
// .alpha, and ComfyUI's full differences .diff (weight) and .diff_b (bias).
//
// Kohya flattens paths by turning every '.' into '_', which cannot be undone by rule ("to_q" vs "to.q"), so
// stems are resolved against the module paths the networks really have: a flattened stem names the module
// whose path flattens to it. Text-encoder paths may also use the transformers-4 style ("model.layers.N")
// for the canonical "model.language_model.layers.N".
//
// Scale, as ComfyUI and diffusers apply it: alpha / rank where the file has an .alpha, times PEFT's
// lora_alpha / r where the safetensors header carries diffusers' "lora_adapter_metadata" (with PEFT's
// alpha_pattern / rank_pattern, and alpha / sqrt(r) under use_rslora), else 1. The user's strength is a
// separate multiplier the caller applies.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace canvas {

enum class LoraComponent { Transformer, TextEncoder };
// "transformer" or "text encoder", for messages.
std::string_view lora_component_name(LoraComponent component);

// The module paths each network has, e.g. "transformer_blocks.0.attn.to_q" for the transformer and
// "model.language_model.layers.0.self_attn.q_proj" for the text encoder.
struct LoraModuleNames {
  std::vector<std::string> transformer;
  std::vector<std::string> text_encoder;
};

// The module paths among a network's parameter names (as its visit gives them): each name ending in
// ".weight", without that suffix.
std::vector<std::string> lora_module_names(const std::vector<std::string>& parameter_names);

// One change to one module: a low-rank pair (down and up), or a full difference (diff and/or diff_bias).
// Tensors are read-only views of the mapped file in the dtype stored there (f32, f16 or bf16).
struct LoraUpdate {
  LoraComponent component = LoraComponent::Transformer;
  std::string module;  // a path from LoraModuleNames, e.g. "transformer_blocks.0.attn.to_q"
  Tensor down;         // lora_down / lora_A: [rank, in], or [rank, in, kh, kw] for a convolution
  Tensor up;           // lora_up / lora_B: [out, rank], or [out, rank, 1, 1]
  Tensor diff;         // the weight difference [out, in] (or [out, in, kh, kw]); undefined for a pair
  Tensor diff_bias;    // the bias difference [out]; undefined when the file has none
  // The pair's delta is scale * up @ down; a difference is added as stored (scale 1).
  float scale = 1.0f;
  // The stem of the file's keys for this update, e.g. "lora_unet_transformer_blocks_0_attn_to_q".
  std::string source;

  bool low_rank() const { return down.defined(); }
  int64_t rank() const { return low_rank() ? down.dim(0) : 0; }
  // The module's input features (channels); 0 when only a bias difference is given.
  int64_t in_features() const;
  int64_t out_features() const;
};

struct LoraFile {
  std::filesystem::path path;
  // The key styles found, in the order of the list above, joined by '+' (e.g. "kohya", "diffusers").
  std::string format;
  // In the order of the modules in LoraModuleNames, transformer first.
  std::vector<LoraUpdate> updates;
};

// Reads and validates the whole file. Throws canvas::Error naming the file on anything it cannot apply
// exactly: keys matching no module (listed), unsupported adapter kinds (LoHa, LoKr, DoRA, ...), a down
// without its up or the reverse, ranks that disagree, a non-scalar alpha, non-float tensors, an empty or
// corrupt file.
LoraFile read_lora_file(const std::filesystem::path& path, const LoraModuleNames& modules);

}  // namespace canvas
