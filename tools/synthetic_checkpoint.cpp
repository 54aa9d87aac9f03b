// Writes a complete Qwen-Image-2512-shaped diffusers folder with random weights, so loading, memory use
// and speed can be measured at full size without the real weights. The shapes come from each model's
// own parameter list; the configs are the published ones unless a size is overridden.
//
//   canvas-synthetic-checkpoint --output DIR [--components transformer,text_encoder,vae] [--layers 60]
//       [--heads 24] [--text-layers 28] [--text-heads 28] [--vae-base-dim 96] [--shard-gib 5]
//       [--dtype bf16] [--seed 0] [--tokenizer DIR]
//
// DIR receives model_index.json, scheduler/, tokenizer/ (the real Qwen2 vocabulary, copied from
// --tokenizer) and, for each listed component, its config.json and either one weight file or shards
// plus an index, as on the Hub. The text encoder holds the language model and lm_head of Qwen2.5-VL-7B
// but not its vision tower: text-to-image never reads it, so its ~0.67 B weights are left out (its
// settings are still in config.json).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <set>

#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen_image_transformer.h"
#include "synthetic/component_configs.h"
#include "synthetic/random_weights.h"

namespace {

using namespace canvas;
namespace fs = std::filesystem;

const fs::path kTinyModel = fs::path(CANVAS_SOURCE_DIR) / "models" / "tiny-qwen-image";

using ParameterList = std::vector<std::pair<std::string, Shape>>;

void write_component(const fs::path& folder, const nlohmann::json& config, const ParameterList& tensors,
                     const synthetic::ShardedCheckpoint& layout, const std::string& label) {
  fs::create_directories(folder);
  synthetic::write_json(folder / "config.json", config);
  synthetic::WrittenCheckpoint written = synthetic::write_random_checkpoint(folder, tensors, layout);
  std::fprintf(stderr, "%s: %lld parameters, %.2f GB, %zu file(s)\n", label.c_str(),
               static_cast<long long>(written.parameters), static_cast<double>(written.bytes) / 1e9,
               written.files);
}

// The parts with no random weights: the tokenizer's files (copied), and the published Qwen-Image
// scheduler config and model_index.json (written from their known contents, so the tool needs no
// source tree at run time).
void write_fixed_parts(const fs::path& output, const fs::path& tokenizer) {
  check(fs::is_regular_file(tokenizer / "tokenizer.json"),
        "no tokenizer.json in " + tokenizer.string() +
            "; pass --tokenizer with the tokenizer/ folder of a Qwen-Image download");
  fs::create_directories(output / "tokenizer");
  for (const fs::directory_entry& entry : fs::directory_iterator(tokenizer)) {
    if (entry.is_regular_file()) {
      fs::copy_file(entry.path(), output / "tokenizer" / entry.path().filename(),
                    fs::copy_options::overwrite_existing);
    }
  }
  fs::create_directories(output / "scheduler");
  synthetic::write_json(output / "scheduler" / "scheduler_config.json",
                        {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                         {"_diffusers_version", "0.34.0.dev0"},
                         {"base_image_seq_len", 256},
                         {"base_shift", 0.5},
                         {"invert_sigmas", false},
                         {"max_image_seq_len", 8192},
                         {"max_shift", 0.9},
                         {"num_train_timesteps", 1000},
                         {"shift", 1.0},
                         {"shift_terminal", 0.02},
                         {"stochastic_sampling", false},
                         {"time_shift_type", "exponential"},
                         {"use_beta_sigmas", false},
                         {"use_dynamic_shifting", true},
                         {"use_exponential_sigmas", false},
                         {"use_karras_sigmas", false}});
  synthetic::write_json(output / "model_index.json",
                        {{"_class_name", "QwenImagePipeline"},
                         {"_diffusers_version", "0.34.0.dev0"},
                         {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                         {"text_encoder", {"transformers", "Qwen2_5_VLForConditionalGeneration"}},
                         {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
                         {"transformer", {"diffusers", "QwenImageTransformer2DModel"}},
                         {"vae", {"diffusers", "AutoencoderKLQwenImage"}}});
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a full-size Qwen-Image diffusers folder with random weights (the text encoder's vision tower "
      "is left out: text-to-image never reads it)"};
  std::string output, dtype_option = "bf16", tokenizer = (kTinyModel / "tokenizer").string();
  std::vector<std::string> components = {"transformer", "text_encoder", "vae"};
  synthetic::ComponentSizes sizes;
  double shard_gib = 5.0;
  uint64_t seed = 0;
  bool zeros = false;
  app.add_option("--output", output, "Folder to write (created)")->required();
  app.add_option("--components", components, "Weighted components to write")
      ->delimiter(',')
      ->check(CLI::IsMember({"transformer", "text_encoder", "vae"}))
      ->capture_default_str();
  app.add_option("--layers", sizes.transformer_layers, "Transformer blocks")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--heads", sizes.transformer_heads, "Transformer attention heads, 128 wide")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--text-layers", sizes.text_layers, "Text encoder decoder layers")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--text-heads", sizes.text_heads,
                 "Text encoder attention heads, 128 wide; also sets the transformer's joint_attention_dim")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--vae-base-dim", sizes.vae_base_dim, "VAE base channel count")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--shard-gib", shard_gib, "Largest shard in GiB; 0 writes a single file")
      ->capture_default_str();
  app.add_option("--dtype", dtype_option, "bf16, f16 or f32")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the random values")->capture_default_str();
  app.add_flag("--zeros", zeros,
               "All-zero weights in sparse files: the full layout in seconds and no disk space, for planning "
               "and memory tests");
  app.add_option("--tokenizer", tokenizer, "Folder with tokenizer.json and tokenizer_config.json to copy")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    synthetic::ShardedCheckpoint layout;
    check(dtype_from_safetensors(dtype_option == "bf16"  ? "BF16"
                                 : dtype_option == "f16" ? "F16"
                                                         : "F32",
                                 layout.dtype),
          "unknown dtype " + dtype_option);
    layout.shard_limit_bytes = static_cast<int64_t>(shard_gib * (1 << 30));
    layout.seed = seed;
    layout.zeros = zeros;
    const fs::path root(output);
    fs::create_directories(root);
    write_fixed_parts(root, tokenizer);
    const std::set<std::string> selected(components.begin(), components.end());

    if (selected.count("transformer")) {
      nlohmann::json json = synthetic::transformer_config_json(sizes);
      auto config = QwenImageTransformerConfig::from_json(json, "transformer/config.json");
      layout.file_stem = "diffusion_pytorch_model";
      write_component(root / "transformer", json, QwenImageTransformer2DModel::parameter_shapes(config),
                      layout, "transformer");
    }
    if (selected.count("text_encoder")) {
      nlohmann::json json = synthetic::text_encoder_config_json(sizes);
      auto config = Qwen2_5_VLTextConfig::from_json(json, "text_encoder/config.json");
      ParameterList tensors = Qwen2_5_VLTextModel::parameter_shapes(config);
      // tie_word_embeddings is false, so the checkpoint carries its own output projection.
      tensors.push_back({"lm_head.weight", {config.vocab_size, config.hidden_size}});
      layout.file_stem = "model";
      write_component(root / "text_encoder", json, tensors, layout, "text_encoder (language model)");
    }
    if (selected.count("vae")) {
      nlohmann::json json = synthetic::vae_config_json(sizes);
      auto config = AutoencoderKLQwenImageConfig::from_json(json, "vae/config.json");
      layout.file_stem = "diffusion_pytorch_model";
      write_component(root / "vae", json, AutoencoderKLQwenImage::parameter_shapes(config), layout, "vae");
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
