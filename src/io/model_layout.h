// Finding a model's parts from the path a user gives: a diffusers folder, a Hugging Face cache entry, or a
// single-file transformer checkpoint (ComfyUI-style or bare .safetensors, or a ComfyUI-GGUF .gguf) with the
// other parts from the paths given beside it (ModelParts).
//
// Resolution opens every weight file's header, so a missing shard or a corrupt file is reported now,
// before anything is computed, and text-encoder naming styles are settled once here.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "io/weight_source.h"

namespace canvas {

enum class ModelFormat {
  Diffusers,          // model_index.json plus one folder per component
  ComfyUiCheckpoint,  // one .safetensors with the transformer under "model.diffusion_model."
  TransformerFile,    // one .safetensors holding only the transformer, under diffusers names
  GgufTransformer,    // one .gguf (architecture qwen_image) holding only the transformer
};
std::string_view model_format_name(ModelFormat format);

struct ComponentLayout {
  std::string name;        // "transformer", "text_encoder", "vae", "tokenizer", "scheduler", ...
  std::string library;     // from model_index.json: "diffusers", "transformers"; empty when unknown
  std::string class_name;  // from model_index.json, e.g. "QwenImageTransformer2DModel"; empty when unknown
  std::filesystem::path folder;  // empty for single-file checkpoints
  std::filesystem::path
      config_file;  // config.json (scheduler_config.json for the scheduler); empty when none
  // A .safetensors file, a *.safetensors.index.json, or a folder of .safetensors files; empty when the
  // component has no weights (tokenizer, scheduler).
  std::filesystem::path weights;
  // Applied to stored names first; then only tensors under name_prefix belong to the component, with the
  // prefix stripped.
  std::vector<NameRewrite> rewrites;
  std::string name_prefix;

  bool has_weights() const { return !weights.empty(); }
  // The component's tensors under canonical names. Throws canvas::Error when it has no weights.
  WeightSource open_weights() const;
};

struct ModelLayout {
  ModelFormat format = ModelFormat::Diffusers;
  std::filesystem::path
      root;  // the diffusers folder (the snapshot, for a cache entry) or the checkpoint file
  nlohmann::json model_index;  // null for single-file checkpoints
  std::string pipeline_class;  // model_index.json's "_class_name", a Qwen-Image pipeline; empty for one file
  std::map<std::string, ComponentLayout, std::less<>> components;
  // What the user should know about the layout, e.g. which parts a single file does not provide.
  std::vector<std::string> notes;

  bool has(std::string_view component) const { return components.find(component) != components.end(); }
  // Throws canvas::Error saying why the component is absent and where it must come from.
  const ComponentLayout& component(std::string_view name) const;
};

// Where a single-file transformer's other parts come from (the command line's --text-encoder and --vae).
struct ModelParts {
  // A diffusers Qwen-Image folder or its text_encoder/ folder: the text encoder, and the tokenizer/ and
  // scheduler/ folders of the same diffusers folder. Empty when not given.
  std::filesystem::path text_encoder;
  // A diffusers Qwen-Image folder or its vae/ folder. Empty when not given.
  std::filesystem::path vae;

  bool empty() const { return text_encoder.empty() && vae.empty(); }
};

// Throws canvas::Error naming the path and what is missing or malformed. `parts` are only for a single-file
// transformer; a diffusers folder brings its own. A single file's transformer reads the config.json in its
// folder when there is one, and is otherwise configured from its tensor shapes (QwenImageTransformerConfig).
ModelLayout resolve_model(const std::filesystem::path& path, const ModelParts& parts = {});

// The rewrites that bring a Qwen2.5-VL checkpoint's names into the transformers-5 style
// ("model.language_model.*", "model.visual.*", "lm_head.*") that the text encoder reads: none when the
// names already have it, legacy-to-canonical ones for "model.layers.*" / "visual.*" names. Throws
// canvas::Error when both styles appear. `source` names the checkpoint in messages.
std::vector<NameRewrite> text_encoder_rewrites(const std::vector<std::string>& names,
                                               const std::string& source);

}  // namespace canvas
