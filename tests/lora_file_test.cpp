#include "io/lora_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/qwen_image_model.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The module paths of the tiny model's transformer (2 blocks, dim 32) and text encoder (2 layers).
const LoraModuleNames& tiny_modules() {
  static const LoraModuleNames modules = [] {
    const QwenImageConfigs configs = read_qwen_image_configs(test::source_path("models/tiny-qwen-image"));
    auto names = [](const std::vector<std::pair<std::string, Shape>>& shapes) {
      std::vector<std::string> parameter_names;
      for (const auto& entry : shapes) parameter_names.push_back(entry.first);
      return lora_module_names(parameter_names);
    };
    return LoraModuleNames{names(QwenImageTransformer2DModel::parameter_shapes(configs.transformer)),
                           names(Qwen2_5_VLTextModel::parameter_shapes(configs.text_encoder))};
  }();
  return modules;
}

// Distinct values, so that a test can tell which tensor an update holds.
Tensor values(const Shape& shape, float first = 0.0f, DType dtype = DType::F32) {
  std::vector<float> data(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < data.size(); ++i) data[i] = first + 0.25f * static_cast<float>(i % 8);
  return Tensor::from_floats(data, shape).to(dtype);
}

Tensor scalar(float value, DType dtype = DType::F32) {
  return Tensor::from_floats(std::vector<float>{value}, {}).to(dtype);
}

// A low-rank pair under `stem` with the given suffixes: down [rank, in], up [out, rank].
void add_pair(NamedTensors& tensors, const std::string& stem, const std::string& down_suffix,
              const std::string& up_suffix, int64_t rank, int64_t in, int64_t out, DType dtype = DType::F32) {
  tensors.emplace_back(stem + down_suffix, values({rank, in}, 1.0f, dtype));
  tensors.emplace_back(stem + up_suffix, values({out, rank}, 2.0f, dtype));
}

void add_kohya_pair(NamedTensors& tensors, const std::string& stem, int64_t rank, int64_t in, int64_t out,
                    DType dtype = DType::F32) {
  add_pair(tensors, stem, ".lora_down.weight", ".lora_up.weight", rank, in, out, dtype);
}

void add_peft_pair(NamedTensors& tensors, const std::string& stem, int64_t rank, int64_t in, int64_t out) {
  add_pair(tensors, stem, ".lora_A.weight", ".lora_B.weight", rank, in, out);
}

fs::path write_lora(const std::string& name, const NamedTensors& tensors,
                    const std::map<std::string, std::string>& metadata = {}) {
  const fs::path path = test::scratch_dir("lora_file_" + name) / (name + ".safetensors");
  write_safetensors(path, tensors, metadata);
  return path;
}

LoraFile read(const std::string& name, const NamedTensors& tensors,
              const std::map<std::string, std::string>& metadata = {}) {
  return read_lora_file(write_lora(name, tensors, metadata), tiny_modules());
}

std::string read_error(const std::string& name, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {}) {
  const fs::path path = write_lora(name, tensors, metadata);
  const std::string message = test::error_of([&] { read_lora_file(path, tiny_modules()); });
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  return message;
}

std::vector<std::string> modules_of(const LoraFile& file) {
  std::vector<std::string> modules;
  for (const LoraUpdate& update : file.updates) modules.push_back(update.module);
  return modules;
}

TEST(LoraFile, ModuleNamesComeFromWeightNames) {
  EXPECT_EQ(lora_module_names({"img_in.weight", "img_in.bias", "txt_norm.weight", "a.weight_scale"}),
            (std::vector<std::string>{"img_in", "txt_norm"}));
  const LoraModuleNames& modules = tiny_modules();
  EXPECT_NE(
      std::find(modules.transformer.begin(), modules.transformer.end(), "transformer_blocks.1.attn.to_out.0"),
      modules.transformer.end());
  EXPECT_NE(std::find(modules.text_encoder.begin(), modules.text_encoder.end(),
                      "model.language_model.layers.1.self_attn.q_proj"),
            modules.text_encoder.end());
}

TEST(LoraFile, DiffusersPeftKeys) {
  NamedTensors tensors;
  add_peft_pair(tensors, "transformer.transformer_blocks.0.attn.to_q", 4, 32, 32);
  add_peft_pair(tensors, "transformer.img_in", 4, 64, 32);
  const LoraFile file = read("diffusers", tensors);
  EXPECT_EQ(file.format, "diffusers");
  // In the model's order: img_in comes before the blocks.
  ASSERT_EQ(modules_of(file), (std::vector<std::string>{"img_in", "transformer_blocks.0.attn.to_q"}));
  const LoraUpdate& img_in = file.updates[0];
  EXPECT_EQ(img_in.component, LoraComponent::Transformer);
  EXPECT_TRUE(img_in.low_rank());
  EXPECT_EQ(img_in.rank(), 4);
  EXPECT_EQ(img_in.in_features(), 64);
  EXPECT_EQ(img_in.out_features(), 32);
  EXPECT_EQ(img_in.down.shape(), (Shape{4, 64}));
  EXPECT_EQ(img_in.up.shape(), (Shape{32, 4}));
  EXPECT_FALSE(img_in.diff.defined());
  EXPECT_EQ(img_in.scale, 1.0f);
  EXPECT_EQ(img_in.source, "transformer.img_in");
  EXPECT_TRUE(test::bit_identical(img_in.down, values({4, 64}, 1.0f)));
  EXPECT_TRUE(test::bit_identical(img_in.up, values({32, 4}, 2.0f)));
}

TEST(LoraFile, PeftDefaultAdapterWithoutPrefix) {
  NamedTensors tensors;
  add_pair(tensors, "transformer_blocks.1.attn.to_out.0", ".lora_A.default.weight", ".lora_B.default.weight",
           2, 32, 32);
  const LoraFile file = read("peft_default", tensors);
  EXPECT_EQ(file.format, "plain");
  ASSERT_EQ(modules_of(file), (std::vector<std::string>{"transformer_blocks.1.attn.to_out.0"}));
  EXPECT_EQ(file.updates[0].rank(), 2);
  EXPECT_EQ(file.updates[0].scale, 1.0f);
}

TEST(LoraFile, PeftMetadataGivesAlphaAndPatterns) {
  NamedTensors tensors;
  add_peft_pair(tensors, "transformer.transformer_blocks.0.attn.to_q", 4, 32, 32);
  add_peft_pair(tensors, "transformer.transformer_blocks.1.attn.to_q", 4, 32, 32);
  add_peft_pair(tensors, "transformer.img_in", 2, 64, 32);
  // As diffusers' save_lora_weights writes it: PEFT's LoraConfig with every field under "transformer.".
  const nlohmann::json config = {{"transformer.lora_alpha", 8},
                                 {"transformer.r", 4},
                                 {"transformer.alpha_pattern", {{"transformer_blocks.1.attn.to_q", 2}}},
                                 {"transformer.rank_pattern", {{"img_in", 2}}},
                                 {"transformer.use_rslora", false}};
  const LoraFile file =
      read("peft_metadata", tensors, {{"lora_adapter_metadata", config.dump()}, {"format", "pt"}});
  ASSERT_EQ(modules_of(file), (std::vector<std::string>{"img_in", "transformer_blocks.0.attn.to_q",
                                                        "transformer_blocks.1.attn.to_q"}));
  EXPECT_EQ(file.updates[0].scale, 4.0f);  // 8 / rank_pattern 2
  EXPECT_EQ(file.updates[1].scale, 2.0f);  // 8 / 4
  EXPECT_EQ(file.updates[2].scale, 0.5f);  // alpha_pattern 2 / 4

  // A model's own save_lora_adapter leaves the fields bare; use_rslora divides by sqrt(r).
  const nlohmann::json bare = {{"lora_alpha", 6}, {"r", 4}, {"use_rslora", true}};
  NamedTensors one;
  add_peft_pair(one, "transformer_blocks.0.attn.to_q", 4, 32, 32);
  const LoraFile rslora = read("peft_rslora", one, {{"lora_adapter_metadata", bare.dump()}});
  ASSERT_EQ(rslora.updates.size(), 1u);
  EXPECT_EQ(rslora.updates[0].scale, 3.0f);  // 6 / sqrt(4)
}

TEST(LoraFile, KohyaFlattenedNamesResolveAgainstTheModules) {
  NamedTensors tensors;
  const std::pair<std::string, std::string> stems[] = {
      {"lora_unet_transformer_blocks_0_attn_add_q_proj", "transformer_blocks.0.attn.add_q_proj"},
      {"lora_unet_transformer_blocks_0_attn_to_add_out", "transformer_blocks.0.attn.to_add_out"},
      {"lora_unet_transformer_blocks_0_attn_to_out_0", "transformer_blocks.0.attn.to_out.0"},
      {"lora_unet_transformer_blocks_0_img_mod_1", "transformer_blocks.0.img_mod.1"},
      {"lora_unet_transformer_blocks_1_txt_mlp_net_0_proj", "transformer_blocks.1.txt_mlp.net.0.proj"},
      {"lora_unet_img_in", "img_in"},
      {"lora_unet_txt_in", "txt_in"},
      {"lora_unet_proj_out", "proj_out"},
      {"lora_unet_norm_out_linear", "norm_out.linear"},
      {"lora_unet_time_text_embed_timestep_embedder_linear_1", "time_text_embed.timestep_embedder.linear_1"},
      {"lora_unet_time_text_embed_timestep_embedder_linear_2", "time_text_embed.timestep_embedder.linear_2"},
  };
  for (const auto& [stem, module] : stems) {
    add_kohya_pair(tensors, stem, 4, 32, 32, DType::F16);
    tensors.emplace_back(stem + ".alpha", scalar(2.0f, DType::BF16));
  }
  const LoraFile file = read("kohya", tensors);
  EXPECT_EQ(file.format, "kohya");
  ASSERT_EQ(file.updates.size(), std::size(stems));
  for (const auto& [stem, module] : stems) {
    auto update = std::find_if(file.updates.begin(), file.updates.end(),
                               [&](const LoraUpdate& u) { return u.source == stem; });
    ASSERT_NE(update, file.updates.end()) << stem;
    EXPECT_EQ(update->module, module);
    EXPECT_EQ(update->scale, 0.5f);  // alpha 2 / rank 4
    EXPECT_EQ(update->down.dtype(), DType::F16);
  }
}

TEST(LoraFile, ComfyUiPrefixWithEitherPairSpelling) {
  NamedTensors tensors;
  add_kohya_pair(tensors, "diffusion_model.transformer_blocks.0.attn.to_k", 8, 32, 32);
  tensors.emplace_back("diffusion_model.transformer_blocks.0.attn.to_k.alpha", scalar(4.0f));
  // ComfyUI (like diffusers) scales lora_A / lora_B by alpha / rank as well.
  add_peft_pair(tensors, "diffusion_model.proj_out", 2, 32, 16);
  tensors.emplace_back("diffusion_model.proj_out.alpha", scalar(3.0f));
  const LoraFile file = read("comfyui", tensors);
  EXPECT_EQ(file.format, "comfyui");
  ASSERT_EQ(modules_of(file), (std::vector<std::string>{"transformer_blocks.0.attn.to_k", "proj_out"}));
  EXPECT_EQ(file.updates[0].scale, 0.5f);
  EXPECT_EQ(file.updates[1].scale, 1.5f);
  EXPECT_EQ(file.updates[1].out_features(), 16);
}

TEST(LoraFile, LightningDottedNamesWithAlpha) {
  // lightx2v's Qwen-Image-Lightning files: bare diffusers paths, lora_down / lora_up, alpha 8 at rank 64.
  NamedTensors tensors;
  add_kohya_pair(tensors, "transformer_blocks.0.txt_mlp.net.2", 64, 128, 32, DType::BF16);
  tensors.emplace_back("transformer_blocks.0.txt_mlp.net.2.alpha", scalar(8.0f));
  const LoraFile file = read("lightning", tensors);
  EXPECT_EQ(file.format, "plain");
  ASSERT_EQ(file.updates.size(), 1u);
  EXPECT_EQ(file.updates[0].module, "transformer_blocks.0.txt_mlp.net.2");
  EXPECT_EQ(file.updates[0].scale, 0.125f);
  EXPECT_EQ(file.updates[0].in_features(), 128);
}

TEST(LoraFile, LycorisPrefix) {
  NamedTensors tensors;
  add_kohya_pair(tensors, "lycoris_transformer_blocks_1_attn_to_add_out", 4, 32, 32);
  tensors.emplace_back("lycoris_transformer_blocks_1_attn_to_add_out.alpha", scalar(1.0f));
  const LoraFile file = read("lycoris", tensors);
  EXPECT_EQ(file.format, "lycoris");
  ASSERT_EQ(modules_of(file), (std::vector<std::string>{"transformer_blocks.1.attn.to_add_out"}));
  EXPECT_EQ(file.updates[0].scale, 0.25f);
}

TEST(LoraFile, FullDifferences) {
  NamedTensors tensors;
  tensors.emplace_back("diffusion_model.txt_in.diff", values({32, 32}, 3.0f));
  tensors.emplace_back("diffusion_model.txt_in.diff_b", values({32}, 4.0f));
  tensors.emplace_back("diffusion_model.transformer_blocks.0.attn.to_v.diff_b", values({32}, 5.0f));
  // A pair and a difference for one module stay two updates.
  add_kohya_pair(tensors, "diffusion_model.txt_in", 2, 32, 32);
  const LoraFile file = read("diff", tensors);
  ASSERT_EQ(modules_of(file),
            (std::vector<std::string>{"txt_in", "txt_in", "transformer_blocks.0.attn.to_v"}));
  EXPECT_TRUE(file.updates[0].low_rank());
  const LoraUpdate& difference = file.updates[1];
  EXPECT_FALSE(difference.low_rank());
  EXPECT_EQ(difference.rank(), 0);
  EXPECT_TRUE(test::bit_identical(difference.diff, values({32, 32}, 3.0f)));
  EXPECT_TRUE(test::bit_identical(difference.diff_bias, values({32}, 4.0f)));
  EXPECT_EQ(difference.scale, 1.0f);
  EXPECT_EQ(difference.in_features(), 32);
  const LoraUpdate& bias_only = file.updates[2];
  EXPECT_FALSE(bias_only.diff.defined());
  EXPECT_EQ(bias_only.diff_bias.shape(), (Shape{32}));
  EXPECT_EQ(bias_only.in_features(), 0);
  EXPECT_EQ(bias_only.out_features(), 32);
}

TEST(LoraFile, ConvolutionPairsAreReported) {
  // LoCon pairs of a convolution: down [rank, in, kh, kw], up [out, rank, 1, 1]. Whether they fit the module
  // is the applier's question.
  NamedTensors tensors = {{"lora_unet_img_in.lora_down.weight", values({4, 16, 3, 3})},
                          {"lora_unet_img_in.lora_up.weight", values({32, 4, 1, 1})}};
  const LoraFile file = read("locon", tensors);
  ASSERT_EQ(file.updates.size(), 1u);
  EXPECT_EQ(file.updates[0].down.shape(), (Shape{4, 16, 3, 3}));
  EXPECT_EQ(file.updates[0].rank(), 4);
  EXPECT_EQ(file.updates[0].in_features(), 16);
  EXPECT_EQ(file.updates[0].out_features(), 32);

  tensors[1].second = values({32, 4, 3, 3});
  EXPECT_NE(read_error("locon_bad_up", tensors).find("expected [out, rank, 1, 1]"), std::string::npos);
}

TEST(LoraFile, TextEncoderKeys) {
  NamedTensors tensors;
  // kohya flattened, in the transformers-4 naming and the canonical one.
  add_kohya_pair(tensors, "lora_te_model_layers_0_self_attn_q_proj", 4, 32, 32);
  add_kohya_pair(tensors, "lora_te1_model_language_model_layers_1_mlp_down_proj", 4, 64, 32);
  // diffusers dotted, both namings.
  add_peft_pair(tensors, "text_encoder.model.layers.0.mlp.gate_proj", 4, 32, 64);
  add_peft_pair(tensors, "text_encoder.model.language_model.layers.1.self_attn.o_proj", 4, 32, 32);
  add_peft_pair(tensors, "transformer.txt_in", 4, 32, 32);
  const LoraFile file = read("text_encoder", tensors);
  EXPECT_EQ(file.format, "diffusers+kohya");
  ASSERT_EQ(modules_of(file),
            (std::vector<std::string>{"txt_in", "model.language_model.layers.0.self_attn.q_proj",
                                      "model.language_model.layers.0.mlp.gate_proj",
                                      "model.language_model.layers.1.self_attn.o_proj",
                                      "model.language_model.layers.1.mlp.down_proj"}));
  EXPECT_EQ(file.updates[0].component, LoraComponent::Transformer);
  for (size_t i = 1; i < file.updates.size(); ++i)
    EXPECT_EQ(file.updates[i].component, LoraComponent::TextEncoder);
  EXPECT_EQ(lora_component_name(LoraComponent::TextEncoder), "text encoder");
}

TEST(LoraFile, KeysOfNoModuleAreListed) {
  NamedTensors tensors;
  add_kohya_pair(tensors, "lora_unet_transformer_blocks_0_attn_to_q", 4, 32, 32);
  for (int i = 0; i < 4; ++i) {
    add_kohya_pair(tensors, "lora_unet_down_blocks_" + std::to_string(i) + "_attentions_0_proj_in", 4, 32,
                   32);
  }
  const std::string message = read_error("unknown", tensors);
  EXPECT_NE(message.find("8 tensors name no module"), std::string::npos) << message;
  EXPECT_NE(message.find("'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("and 3 more"), std::string::npos) << message;
  // A block the model does not have is no module either.
  NamedTensors beyond;
  add_peft_pair(beyond, "transformer.transformer_blocks.2.attn.to_q", 4, 32, 32);
  EXPECT_NE(read_error("unknown_block", beyond).find("2 tensors name no module"), std::string::npos);
}

TEST(LoraFile, FlattenedNameOfSeveralModulesIsAnError) {
  const LoraModuleNames modules{{"a.b_c", "a_b.c"}, {}};
  const fs::path path = write_lora("ambiguous", {{"lora_unet_a_b_c.lora_down.weight", values({2, 4})},
                                                 {"lora_unet_a_b_c.lora_up.weight", values({4, 2})}});
  EXPECT_NE(test::error_of([&] { read_lora_file(path, modules); }).find("several modules share"),
            std::string::npos);
  // Dotted names stay exact.
  const fs::path dotted = write_lora(
      "dotted", {{"a_b.c.lora_A.weight", values({2, 4})}, {"a_b.c.lora_B.weight", values({4, 2})}});
  EXPECT_EQ(modules_of(read_lora_file(dotted, modules)), (std::vector<std::string>{"a_b.c"}));
}

TEST(LoraFile, UnsupportedAndUnrecognizedKeys) {
  const NamedTensors loha = {{"lora_unet_img_in.hada_w1_a", values({4, 32})}};
  EXPECT_NE(read_error("loha", loha).find("(LoHa)"), std::string::npos);
  NamedTensors dora;
  add_kohya_pair(dora, "lora_unet_img_in", 4, 64, 32);
  dora.emplace_back("lora_unet_img_in.dora_scale", values({32, 1}));
  EXPECT_NE(read_error("dora", dora).find("(DoRA)"), std::string::npos);
  const NamedTensors weights = {{"transformer_blocks.0.attn.to_q.weight", values({32, 32})}};
  EXPECT_NE(read_error("not_lora", weights).find("are not LoRA tensors"), std::string::npos);
  NamedTensors peft_dora;
  add_peft_pair(peft_dora, "transformer.img_in", 4, 64, 32);
  const std::map<std::string, std::string> metadata = {
      {"lora_adapter_metadata", nlohmann::json{{"transformer.use_dora", true}}.dump()}};
  EXPECT_NE(read_error("use_dora", peft_dora, metadata).find("DoRA"), std::string::npos);
}

TEST(LoraFile, PairErrors) {
  const NamedTensors down_only = {{"lora_unet_img_in.lora_down.weight", values({4, 64})}};
  EXPECT_NE(read_error("down_only", down_only).find("has no up matrix"), std::string::npos);
  const NamedTensors up_only = {{"transformer.img_in.lora_B.weight", values({32, 4})}};
  EXPECT_NE(read_error("up_only", up_only).find("has no down matrix"), std::string::npos);
  const NamedTensors ranks = {{"img_in.lora_down.weight", values({4, 64})},
                              {"img_in.lora_up.weight", values({32, 8})}};
  const std::string rank_message = read_error("ranks", ranks);
  EXPECT_NE(rank_message.find("has rank 4 but 'img_in.lora_up.weight' has rank 8"), std::string::npos)
      << rank_message;

  NamedTensors alpha_vector;
  add_kohya_pair(alpha_vector, "lora_unet_img_in", 4, 64, 32);
  alpha_vector.emplace_back("lora_unet_img_in.alpha", values({2}));
  EXPECT_NE(read_error("alpha_vector", alpha_vector).find("an alpha is a single value"), std::string::npos);
  const NamedTensors alpha_alone = {{"lora_unet_img_in.alpha", scalar(4.0f)}};
  EXPECT_NE(read_error("alpha_alone", alpha_alone).find("has no low-rank pair"), std::string::npos);

  NamedTensors integers;
  add_kohya_pair(integers, "lora_unet_img_in", 4, 64, 32);
  integers[0].second = values({4, 64}).to(DType::I64);
  EXPECT_NE(read_error("integers", integers).find("has dtype i64"), std::string::npos);

  const NamedTensors bias_mismatch = {{"txt_in.diff", values({32, 32})}, {"txt_in.diff_b", values({16})}};
  EXPECT_NE(read_error("bias_mismatch", bias_mismatch).find("does not fit"), std::string::npos);

  NamedTensors metadata_rank;
  add_peft_pair(metadata_rank, "transformer.img_in", 4, 64, 32);
  const std::map<std::string, std::string> metadata = {
      {"lora_adapter_metadata",
       nlohmann::json{{"transformer.r", 16}, {"transformer.lora_alpha", 16}}.dump()}};
  EXPECT_NE(read_error("metadata_rank", metadata_rank, metadata).find("rank 16"), std::string::npos);
  EXPECT_NE(
      read_error("metadata_json", metadata_rank, {{"lora_adapter_metadata", "{not json"}}).find("not JSON"),
      std::string::npos);
}

TEST(LoraFile, FileErrorsNameTheFile) {
  EXPECT_NE(read_error("empty", {}).find("holds no tensors"), std::string::npos);

  NamedTensors tensors;
  add_kohya_pair(tensors, "lora_unet_img_in", 4, 64, 32);
  const fs::path truncated = write_lora("truncated", tensors);
  fs::resize_file(truncated, fs::file_size(truncated) - 16);
  const std::string message = test::error_of([&] { read_lora_file(truncated, tiny_modules()); });
  EXPECT_NE(message.find("cannot read the LoRA file"), std::string::npos) << message;
  EXPECT_NE(message.find(truncated.string()), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;

  const fs::path missing = truncated.parent_path() / "missing.safetensors";
  EXPECT_NE(test::error_of([&] { read_lora_file(missing, tiny_modules()); }).find(missing.string()),
            std::string::npos);
}

}  // namespace
}  // namespace canvas
