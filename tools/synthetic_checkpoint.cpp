// Writes a complete diffusers folder with random weights, shaped as Qwen-Image-2512 (text-to-image, the
// default) or Qwen-Image-Edit-2511 (--pipeline edit-plus), so loading, memory use and speed can be
// measured at full size without the real weights. The shapes come from each model's own parameter list;
// the configs are the published ones unless a size is overridden.
//
//   canvas-synthetic-checkpoint --output DIR [--pipeline text-to-image|edit-plus]
//       [--components transformer,text_encoder,vae] [--layers 60] [--heads 24] [--text-layers 28]
//       [--text-heads 28] [--vae-base-dim 96] [--shard-gib 5] [--dtype bf16] [--seed 0] [--zeros]
//       [--tokenizer DIR]
//
// DIR receives model_index.json, scheduler/, tokenizer/ (the real Qwen2 vocabulary, copied from
// --tokenizer) and, for each listed component, its config.json and either one weight file or shards
// plus an index, as on the Hub. The text encoder holds the language model and lm_head of Qwen2.5-VL-7B.
// Text-to-image never reads its vision tower, so there its ~0.67 B weights are left out (its settings
// are still in config.json). An edit folder holds them too (under `model.visual.*`, the published names
// beside `model.language_model.*`), has zero_cond_t in the transformer's config, and adds processor/:
// the Qwen2-VL image processor's published preprocessor_config.json and the tokenizer's files.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <set>

#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen2_5_vl_vision.h"
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

void copy_folder_files(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const fs::directory_entry& entry : fs::directory_iterator(from)) {
    if (entry.is_regular_file()) {
      fs::copy_file(entry.path(), to / entry.path().filename(), fs::copy_options::overwrite_existing);
    }
  }
}

// The parts with no random weights: the tokenizer's files (copied), and the published scheduler config,
// model_index.json and, for an edit folder, preprocessor_config.json (written from their known contents,
// so the tool needs no source tree at run time).
void write_fixed_parts(const fs::path& output, const fs::path& tokenizer,
                       synthetic::SyntheticPipeline pipeline) {
  check(fs::is_regular_file(tokenizer / "tokenizer.json"),
        "no tokenizer.json in " + tokenizer.string() +
            "; pass --tokenizer with the tokenizer/ folder of a Qwen-Image download");
  copy_folder_files(tokenizer, output / "tokenizer");
  fs::create_directories(output / "scheduler");
  synthetic::write_json(output / "scheduler" / "scheduler_config.json", synthetic::scheduler_config_json());
  synthetic::write_json(output / "model_index.json", synthetic::model_index_json(pipeline));
  if (pipeline == synthetic::SyntheticPipeline::EditPlus) {
    // Qwen2VLProcessor.from_pretrained reads the image processor's settings and the tokenizer from this
    // one folder; the published one also has a chat template, which neither loading nor the pipeline
    // (it formats its own prompt) reads.
    copy_folder_files(tokenizer, output / "processor");
    synthetic::write_json(output / "processor" / "preprocessor_config.json",
                          synthetic::preprocessor_config_json());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a full-size Qwen-Image (or Qwen-Image-Edit) diffusers folder with random weights (for "
      "text-to-image the text encoder's vision tower is left out: it never reads it)"};
  std::string output, dtype_option = "bf16", tokenizer = (kTinyModel / "tokenizer").string();
  synthetic::SyntheticPipeline pipeline = synthetic::SyntheticPipeline::TextToImage;
  std::vector<std::string> components = {"transformer", "text_encoder", "vae"};
  synthetic::ComponentSizes sizes;
  double shard_gib = 5.0;
  uint64_t seed = 0;
  bool zeros = false;
  app.add_option("--output", output, "Folder to write (created)")->required();
  app.add_option(
         "--pipeline", pipeline,
         "text-to-image (Qwen-Image-2512) or edit-plus (Qwen-Image-Edit-2511: adds processor/ and the "
         "text encoder's vision tower)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, synthetic::SyntheticPipeline>{
              {"text-to-image", synthetic::SyntheticPipeline::TextToImage},
              {"edit-plus", synthetic::SyntheticPipeline::EditPlus}},
          CLI::ignore_case))
      ->default_str("text-to-image");
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
    write_fixed_parts(root, tokenizer, pipeline);
    const std::set<std::string> selected(components.begin(), components.end());

    if (selected.count("transformer")) {
      nlohmann::json json = synthetic::transformer_config_json(sizes, pipeline);
      auto config = QwenImageTransformerConfig::from_json(json, "transformer/config.json");
      layout.file_stem = "diffusion_pytorch_model";
      write_component(root / "transformer", json, QwenImageTransformer2DModel::parameter_shapes(config),
                      layout, "transformer");
    }
    if (selected.count("text_encoder")) {
      nlohmann::json json = synthetic::text_encoder_config_json(sizes);
      auto config = Qwen2_5_VLTextConfig::from_json(json, "text_encoder/config.json");
      const bool with_vision = pipeline == synthetic::SyntheticPipeline::EditPlus;
      // In the order save_pretrained writes Qwen2_5_VLForConditionalGeneration: vision tower, language
      // model, then lm_head (tie_word_embeddings is false, so the checkpoint carries its own).
      ParameterList tensors;
      if (with_vision) {
        tensors = Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(
            Qwen2_5_VLVisionConfig::from_json(json, "text_encoder/config.json"));
      }
      for (auto& entry : Qwen2_5_VLTextModel::parameter_shapes(config)) tensors.push_back(std::move(entry));
      tensors.push_back({"lm_head.weight", {config.vocab_size, config.hidden_size}});
      layout.file_stem = "model";
      write_component(
          root / "text_encoder", json, tensors, layout,
          with_vision ? "text_encoder (language model and vision tower)" : "text_encoder (language model)");
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
