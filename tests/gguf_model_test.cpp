// A lone GGUF transformer as a model: its layout (architecture check, --text-encoder / --vae parts) and its
// config inferred from tensor shapes.
#include <gtest/gtest.h>

#include <fstream>

#include "io/model_layout.h"
#include "models/qwen_image_transformer.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

const fs::path kTinyGguf = "tests/golden/gguf/tiny/tiny-qwen-image-q8_0.gguf";

TEST(GgufModel, ResolvesAGgufTransformerWithItsParts) {
  const fs::path tiny = test::source_path("models/tiny-qwen-image");
  const ModelLayout alone = resolve_model(test::source_path(kTinyGguf));
  EXPECT_EQ(alone.format, ModelFormat::GgufTransformer);
  test::expect_contains(test::error_of([&] { alone.component("tokenizer"); }), "pass --text-encoder");
  test::expect_contains(test::error_of([&] { alone.component("vae"); }), "pass --vae");

  const ModelLayout layout = resolve_model(test::source_path(kTinyGguf), {tiny / "text_encoder", tiny});
  EXPECT_EQ(layout.component("text_encoder").folder, tiny / "text_encoder");
  EXPECT_EQ(layout.component("tokenizer").folder, tiny / "tokenizer");
  EXPECT_EQ(layout.component("scheduler").config_file, tiny / "scheduler" / "scheduler_config.json");
  EXPECT_EQ(layout.component("vae").folder, tiny / "vae");
  EXPECT_TRUE(layout.notes.empty());
  EXPECT_EQ(layout.component("transformer").open_weights().get("img_in.weight").dtype(), DType::F32);

  test::expect_contains(test::error_of([&] {
                          resolve_model(test::source_path(kTinyGguf), {tiny / "tokenizer", {}});
                        }),
                        "no config.json");
  test::expect_contains(test::error_of([&] {
                          resolve_model(test::source_path(kTinyGguf), {{}, test::source_path(kTinyGguf)});
                        }),
                        "--vae");
}

TEST(GgufModel, RefusesOtherArchitectures) {
  const fs::path path = test::scratch_dir("gguf_llama") / "llama.gguf";
  std::string bytes = "GGUF";
  auto append = [&](uint64_t value, int size) {
    for (int i = 0; i < size; ++i) bytes += static_cast<char>(value >> (8 * i));
  };
  append(3, 4);
  append(0, 8);
  append(1, 8);
  const std::string key = "general.architecture", value = "llama";
  append(key.size(), 8);
  bytes += key;
  append(8, 4);
  append(value.size(), 8);
  bytes += value;
  {
    std::ofstream stream(path, std::ios::binary);
    stream << bytes;
  }
  test::expect_contains(test::error_of([&] { resolve_model(path); }), "holds a 'llama' model");
}

TEST(GgufModel, InfersTheTransformerConfigFromShapes) {
  const fs::path dir = test::scratch_dir("gguf_infer");
  // Qwen-Image's shapes at a width of two heads of 128.
  const int64_t inner = 256;
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"img_in.weight", Tensor::zeros({inner, 64}, DType::F32)},
      {"txt_in.weight", Tensor::zeros({inner, 48}, DType::F32)},
      {"proj_out.weight", Tensor::zeros({64, inner}, DType::F32)},
  };
  for (int block = 0; block < 3; ++block)
    tensors.emplace_back("transformer_blocks." + std::to_string(block) + ".attn.norm_q.weight",
                         Tensor::zeros({128}, DType::F32));
  write_safetensors(dir / "transformer.safetensors", tensors);
  const QwenImageTransformerConfig config =
      QwenImageTransformerConfig::from_weights(WeightSource::open(dir / "transformer.safetensors"));
  EXPECT_EQ(config.in_channels, 64);
  EXPECT_EQ(config.out_channels, 16);
  EXPECT_EQ(config.joint_attention_dim, 48);
  EXPECT_EQ(config.attention_head_dim, 128);
  EXPECT_EQ(config.num_attention_heads, 2);
  EXPECT_EQ(config.num_layers, 3);
  EXPECT_EQ(config.axes_dims_rope, (std::array<int64_t, 3>{16, 56, 56}));

  // The tiny model's head size is 16: its RoPE axes need its config.
  const std::string message = test::error_of(
      [&] { QwenImageTransformerConfig::from_weights(WeightSource::open(test::source_path(kTinyGguf))); });
  test::expect_contains(message, "axes_dims_rope");
  test::expect_contains(message, "head size 16");
  tensors.emplace_back("transformer_blocks.4.attn.norm_q.weight", Tensor::zeros({128}, DType::F32));
  write_safetensors(dir / "gap.safetensors", tensors);
  test::expect_contains(
      test::error_of(
          [&] { QwenImageTransformerConfig::from_weights(WeightSource::open(dir / "gap.safetensors")); }),
      "block 3 has no attn.norm_q.weight");
  tensors.erase(tensors.begin());
  write_safetensors(dir / "partial.safetensors", tensors);
  test::expect_contains(
      test::error_of(
          [&] { QwenImageTransformerConfig::from_weights(WeightSource::open(dir / "partial.safetensors")); }),
      "no 'img_in.weight' tensor");
}

}  // namespace
}  // namespace canvas
