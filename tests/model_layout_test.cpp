#include "io/model_layout.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/json_config.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream stream(path);
  stream << text;
  EXPECT_TRUE(stream.good()) << "cannot write " << path;
}

Tensor small(float value) {
  return Tensor::from_floats(std::vector<float>{value, value}, {2});
}

std::vector<std::pair<std::string, Tensor>> named(const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (size_t i = 0; i < names.size(); ++i) tensors.emplace_back(names[i], small(static_cast<float>(i)));
  return tensors;
}

const std::vector<std::string> kLegacyTextEncoderNames = {
    "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight",
    "visual.blocks.0.attn.qkv.weight", "lm_head.weight"};
const std::vector<std::string> kCanonicalTextEncoderNames = {
    "model.language_model.embed_tokens.weight", "model.language_model.layers.0.self_attn.q_proj.weight",
    "model.language_model.norm.weight", "model.visual.blocks.0.attn.qkv.weight", "lm_head.weight"};

constexpr const char* kModelIndex = R"({
  "_class_name": "QwenImagePipeline",
  "_diffusers_version": "0.35.0",
  "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
  "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
  "tokenizer": ["transformers", "Qwen2Tokenizer"],
  "transformer": ["diffusers", "QwenImageTransformer2DModel"],
  "vae": ["diffusers", "AutoencoderKLQwenImage"],
  "safety_checker": [null, null]
})";

// A miniature of the published Qwen/Qwen-Image repository: sharded transformer and text encoder,
// single-file VAE, legacy text-encoder names.
void write_diffusers_model(const fs::path& root) {
  fs::create_directories(root);
  write_text(root / "model_index.json", kModelIndex);
  for (const char* component : {"transformer", "text_encoder", "vae", "tokenizer", "scheduler"}) {
    fs::create_directories(root / component);
  }
  write_text(root / "transformer" / "config.json", R"({"num_layers": 2})");
  write_safetensors(root / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors",
                    named({"img_in.weight", "transformer_blocks.0.attn.to_q.weight"}));
  write_safetensors(root / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors",
                    named({"transformer_blocks.1.attn.to_q.weight"}));
  write_text(root / "transformer" / "diffusion_pytorch_model.safetensors.index.json", R"({"weight_map": {
      "img_in.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
      "transformer_blocks.0.attn.to_q.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
      "transformer_blocks.1.attn.to_q.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}})");
  write_text(root / "text_encoder" / "config.json", R"({"hidden_size": 8})");
  write_safetensors(root / "text_encoder" / "model.safetensors", named(kLegacyTextEncoderNames));
  write_text(root / "vae" / "config.json", R"({"z_dim": 16})");
  write_safetensors(root / "vae" / "diffusion_pytorch_model.safetensors", named({"decoder.conv_in.weight"}));
  write_text(root / "tokenizer" / "vocab.json", "{}");
  write_text(root / "scheduler" / "scheduler_config.json", R"({"shift": 1.0})");
}

TEST(ModelLayoutTest, ResolvesADiffusersFolder) {
  const fs::path root = test::scratch_dir("layout_diffusers");
  write_diffusers_model(root);
  const ModelLayout layout = resolve_model(root);
  EXPECT_EQ(layout.format, ModelFormat::Diffusers);
  EXPECT_EQ(layout.root, root);
  EXPECT_EQ(layout.pipeline_class, "QwenImagePipeline");
  EXPECT_EQ(layout.components.size(), 5u);
  EXPECT_FALSE(layout.has("safety_checker"));

  const ComponentLayout& transformer = layout.component("transformer");
  EXPECT_EQ(transformer.class_name, "QwenImageTransformer2DModel");
  EXPECT_EQ(transformer.library, "diffusers");
  EXPECT_EQ(transformer.config_file, root / "transformer" / "config.json");
  EXPECT_EQ(transformer.open_weights().size(), 3u);
  EXPECT_EQ(layout.component("vae").open_weights().names(),
            (std::vector<std::string>{"decoder.conv_in.weight"}));
  EXPECT_EQ(layout.component("scheduler").config_file, root / "scheduler" / "scheduler_config.json");
  EXPECT_FALSE(layout.component("tokenizer").has_weights());
  EXPECT_EQ(layout.component("tokenizer").folder, root / "tokenizer");
  // The published text encoder uses legacy names; it comes out canonical.
  EXPECT_EQ(layout.component("text_encoder").open_weights().names(),
            (std::vector<std::string>{"lm_head.weight", "model.language_model.embed_tokens.weight",
                                      "model.language_model.layers.0.self_attn.q_proj.weight",
                                      "model.language_model.norm.weight",
                                      "model.visual.blocks.0.attn.qkv.weight"}));
  test::expect_contains(test::error_of([&] { layout.component("processor"); }), "transformer");
  // Pointing at model_index.json itself finds the same folder.
  EXPECT_EQ(resolve_model(root / "model_index.json").root, root);
}

TEST(ModelLayoutTest, ExplainsWhatADiffusersFolderLacks) {
  const fs::path root = test::scratch_dir("layout_broken");
  write_diffusers_model(root);

  fs::rename(root / "model_index.json", root / "model_index.json.bak");
  const std::string no_index = test::error_of([&] { resolve_model(root); });
  test::expect_contains(no_index, "no model_index.json");
  test::expect_contains(no_index, "models--Org--Name");
  test::expect_contains(test::error_of([&] { resolve_model(root / "vae"); }), "give the folder above it");
  fs::rename(root / "model_index.json.bak", root / "model_index.json");

  fs::rename(root / "vae", root / "vae.bak");
  const std::string no_folder = test::error_of([&] { resolve_model(root); });
  test::expect_contains(no_folder, "'vae'");
  test::expect_contains(no_folder, "AutoencoderKLQwenImage");
  fs::rename(root / "vae.bak", root / "vae");

  fs::remove(root / "text_encoder" / "config.json");
  const std::string no_config = test::error_of([&] { resolve_model(root); });
  test::expect_contains(no_config, "no config.json");
  test::expect_contains(no_config, (root / "text_encoder").string());
  write_text(root / "text_encoder" / "config.json", "{}");

  fs::remove(root / "vae" / "diffusion_pytorch_model.safetensors");
  write_text(root / "vae" / "diffusion_pytorch_model.bin", "pickle");
  const std::string no_weights = test::error_of([&] { resolve_model(root); });
  test::expect_contains(no_weights, "no .safetensors weights");
  test::expect_contains(no_weights, "diffusion_pytorch_model.bin");
  write_safetensors(root / "vae" / "diffusion_pytorch_model.safetensors", named({"w"}));

  fs::remove(root / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors");
  test::expect_contains(test::error_of([&] { resolve_model(root); }),
                        "diffusion_pytorch_model-00002-of-00002.safetensors");

  test::expect_contains(test::error_of([&] { resolve_model(root / "absent"); }), "does not exist");
  test::expect_contains(test::error_of([&] { resolve_model(root / "scheduler" / "scheduler_config.json"); }),
                        "neither a model folder nor a .safetensors checkpoint");
}

TEST(ModelLayoutTest, RefusesAPipelineOutsideTheQwenImageFamily) {
  const fs::path root = test::scratch_dir("layout_pipeline_class");
  write_diffusers_model(root);
  nlohmann::json index = nlohmann::json::parse(kModelIndex);
  index["_class_name"] = "QwenImageEditPlusPipeline";
  write_text(root / "model_index.json", index.dump());
  EXPECT_EQ(resolve_model(root).pipeline_class, "QwenImageEditPlusPipeline");

  index["_class_name"] = "StableDiffusionXLPipeline";
  write_text(root / "model_index.json", index.dump());
  const std::string other = test::error_of([&] { resolve_model(root); });
  test::expect_contains(other, "describes a StableDiffusionXLPipeline, not a Qwen-Image pipeline");
  test::expect_contains(other, (root / "model_index.json").string());

  index.erase("_class_name");
  write_text(root / "model_index.json", index.dump());
  test::expect_contains(test::error_of([&] { resolve_model(root); }), "missing key \"_class_name\"");
}

TEST(ModelLayoutTest, AFifoInPlaceOfWeightsIsNamedWithoutBlocking) {
  // Opening a FIFO for reading would wait for a writer: the test would hang rather than fail.
  const fs::path root = test::scratch_dir("layout_fifo");
  write_diffusers_model(root);
  const fs::path weights = root / "vae" / "diffusion_pytorch_model.safetensors";
  fs::remove(weights);
  ASSERT_EQ(::mkfifo(weights.c_str(), 0600), 0) << std::strerror(errno);
  const std::string in_folder = test::error_of([&] { resolve_model(root); });
  test::expect_contains(in_folder, weights.string() + "' is not a regular file (a FIFO)");

  const fs::path single = root / "transformer.safetensors";
  ASSERT_EQ(::mkfifo(single.c_str(), 0600), 0) << std::strerror(errno);
  test::expect_contains(test::error_of([&] { resolve_model(single); }), "is not a regular file (a FIFO)");

  fs::remove(root / "model_index.json");
  ASSERT_EQ(::mkfifo((root / "model_index.json").c_str(), 0600), 0) << std::strerror(errno);
  test::expect_contains(test::error_of([&] { resolve_model(root); }),
                        "model_index.json' is not a regular file (a FIFO)");
}

// Builds models--Qwen--Qwen-Image the way huggingface_hub does: content in blobs/, snapshots made of
// relative symlinks into it, refs/main naming the current revision.
fs::path write_hf_cache(const fs::path& cache, bool with_ref) {
  const fs::path staging = cache / "staging";
  write_diffusers_model(staging);
  const fs::path entry = cache / "models--Qwen--Qwen-Image";
  const std::string revision = "2f6a1ebc0a4e2b1f";
  fs::create_directories(entry / "blobs");
  int blob_number = 0;
  for (const auto& file : fs::recursive_directory_iterator(staging)) {
    if (!file.is_regular_file()) continue;
    const fs::path relative = fs::relative(file.path(), staging);
    const std::string blob = "blob" + std::to_string(blob_number++);
    fs::copy_file(file.path(), entry / "blobs" / blob);
    const fs::path link = entry / "snapshots" / revision / relative;
    fs::create_directories(link.parent_path());
    fs::create_symlink(fs::relative(entry / "blobs" / blob, link.parent_path()), link);
  }
  fs::remove_all(staging);
  // An older, partial snapshot that refs/main no longer points at.
  fs::create_directories(entry / "snapshots" / "0000older" / "transformer");
  if (with_ref) {
    fs::create_directories(entry / "refs");
    write_text(entry / "refs" / "main", revision);
  }
  return entry;
}

TEST(ModelLayoutTest, ResolvesAHuggingFaceCacheEntryThroughRefsAndSymlinks) {
  const fs::path entry = write_hf_cache(test::scratch_dir("layout_hf_cache"), true);
  const fs::path snapshot = entry / "snapshots" / "2f6a1ebc0a4e2b1f";
  ASSERT_TRUE(fs::is_symlink(snapshot / "vae" / "config.json"));

  const ModelLayout layout = resolve_model(entry);
  EXPECT_EQ(layout.root, snapshot);
  const WeightSource transformer = layout.component("transformer").open_weights();
  EXPECT_EQ(transformer.get("transformer_blocks.1.attn.to_q.weight").to_floats(), (std::vector<float>{0, 0}));
  EXPECT_EQ(transformer.get("img_in.weight").to_floats(), (std::vector<float>{0, 0}));
  EXPECT_TRUE(layout.component("text_encoder").open_weights().contains("model.language_model.norm.weight"));

  // A snapshot given directly is an ordinary diffusers folder.
  EXPECT_EQ(resolve_model(snapshot).root, snapshot);

  write_text(entry / "refs" / "main", "deadbeef\n");
  test::expect_contains(test::error_of([&] { resolve_model(entry); }), "deadbeef");
}

TEST(ModelLayoutTest, CacheEntryWithoutRefsUsesTheFirstSnapshot) {
  const fs::path entry = write_hf_cache(test::scratch_dir("layout_hf_no_refs"), false);
  // "0000older" sorts first and lacks model_index.json, which the error must show.
  test::expect_contains(test::error_of([&] { resolve_model(entry); }), "0000older");
  fs::remove_all(entry / "snapshots" / "0000older");
  EXPECT_EQ(resolve_model(entry).root, entry / "snapshots" / "2f6a1ebc0a4e2b1f");
  fs::remove_all(entry / "snapshots" / "2f6a1ebc0a4e2b1f");
  test::expect_contains(test::error_of([&] { resolve_model(entry); }), "has no snapshots");
}

TEST(ModelLayoutTest, DetectsAndStripsTheComfyUiPrefix) {
  const fs::path path = test::scratch_dir("layout_comfy") / "qwen_image_comfy.safetensors";
  write_safetensors(path, named({"model.diffusion_model.img_in.weight",
                                 "model.diffusion_model.transformer_blocks.0.attn.to_q.weight",
                                 "first_stage_model.decoder.conv_in.weight"}));
  const ModelLayout layout = resolve_model(path);
  EXPECT_EQ(layout.format, ModelFormat::ComfyUiCheckpoint);
  EXPECT_TRUE(layout.model_index.is_null());
  const WeightSource transformer = layout.component("transformer").open_weights();
  EXPECT_EQ(transformer.names(),
            (std::vector<std::string>{"img_in.weight", "transformer_blocks.0.attn.to_q.weight"}));
  EXPECT_EQ(transformer.get("img_in.weight").to_floats(), (std::vector<float>{0, 0}));
  ASSERT_EQ(layout.notes.size(), 2u);
  test::expect_contains(layout.notes[0], "1 tensors outside");
  test::expect_contains(layout.notes[1], "text encoder, VAE");
  const std::string no_vae = test::error_of([&] { layout.component("vae"); });
  test::expect_contains(no_vae, "only the transformer");
  test::expect_contains(no_vae, "diffusers folder");
}

TEST(ModelLayoutTest, AcceptsABareTransformerFileAndRejectsOtherFiles) {
  const fs::path dir = test::scratch_dir("layout_bare");
  write_safetensors(dir / "transformer.safetensors",
                    named({"img_in.weight", "transformer_blocks.0.ff.weight"}));
  const ModelLayout layout = resolve_model(dir / "transformer.safetensors");
  EXPECT_EQ(layout.format, ModelFormat::TransformerFile);
  EXPECT_TRUE(layout.component("transformer").open_weights().contains("transformer_blocks.0.ff.weight"));
  test::expect_contains(test::error_of([&] { layout.component("text_encoder"); }), "only the transformer");

  write_safetensors(dir / "vae.safetensors", named({"decoder.conv_in.weight"}));
  const std::string message = test::error_of([&] { resolve_model(dir / "vae.safetensors"); });
  test::expect_contains(message, "does not look like a Qwen-Image transformer");
  test::expect_contains(message, "decoder.conv_in.weight");
}

TEST(ModelLayoutTest, BothTextEncoderNamingStylesGiveTheCanonicalNames) {
  const fs::path dir = test::scratch_dir("layout_text_encoder_names");
  write_safetensors(dir / "legacy.safetensors", named(kLegacyTextEncoderNames));
  write_safetensors(dir / "canonical.safetensors", named(kCanonicalTextEncoderNames));
  std::vector<std::string> expected = kCanonicalTextEncoderNames;
  std::sort(expected.begin(), expected.end());
  for (const char* file : {"legacy.safetensors", "canonical.safetensors"}) {
    SCOPED_TRACE(file);
    const std::vector<std::string> stored = WeightSource::open(dir / file).names();
    const WeightSource source = WeightSource::open(dir / file, text_encoder_rewrites(stored, file));
    EXPECT_EQ(source.names(), expected);
  }
  EXPECT_TRUE(text_encoder_rewrites(kCanonicalTextEncoderNames, "canonical").empty());

  std::vector<std::string> mixed = kCanonicalTextEncoderNames;
  mixed.push_back("model.layers.1.mlp.up_proj.weight");
  test::expect_contains(test::error_of([&] { text_encoder_rewrites(mixed, "'mixed.safetensors'"); }),
                        "mixed.safetensors");
}

TEST(ModelLayoutJsonConfigTest, ReadsTypedValuesAndNamesKeyAndFile) {
  const fs::path path = test::scratch_dir("layout_json_config") / "config.json";
  write_text(
      path,
      R"({"layers": 60, "eps": 1e-6, "theta": 10000, "width": 3072.0, "axes": [16, 56, 56], "scales": [0.5, 2],
                      "flags": [true, false],
                      "name": "qwen", "guidance": false, "unset": null, "bad_list": [1, "2"]})");
  const nlohmann::json config = read_json_file(path);
  EXPECT_EQ(config_int(config, "layers", path), 60);
  EXPECT_EQ(config_int(config, "width", path), 3072);
  EXPECT_DOUBLE_EQ(config_float(config, "eps", path), 1e-6);
  EXPECT_DOUBLE_EQ(config_float(config, "theta", path), 10000.0);
  EXPECT_EQ(config_int_list(config, "axes", path), (std::vector<int64_t>{16, 56, 56}));
  EXPECT_EQ(config_float_list(config, "scales", path), (std::vector<double>{0.5, 2.0}));
  EXPECT_EQ(config_bool_list(config, "flags", path), (std::vector<bool>{true, false}));
  EXPECT_EQ(config_string(config, "name", path), "qwen");
  EXPECT_FALSE(config_bool(config, "guidance", path));
  EXPECT_EQ(config_int_or(config, "unset", 7, path), 7);
  EXPECT_EQ(config_int_or(config, "absent", 8, path), 8);
  EXPECT_DOUBLE_EQ(config_float_or(config, "absent", 0.5, path), 0.5);
  EXPECT_TRUE(config_bool_or(config, "absent", true, path));
  EXPECT_EQ(config_string_or(config, "absent", "x", path), "x");
  EXPECT_EQ(config_int_list_or(config, "absent", {1, 2}, path), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(config_float_list_or(config, "absent", {0.25}, path), (std::vector<double>{0.25}));

  const std::string missing = test::error_of([&] { config_int(config, "heads", path); });
  test::expect_contains(missing, "\"heads\"");
  test::expect_contains(missing, path.string());
  const std::string wrong = test::error_of([&] { config_int_or(config, "eps", 1, path); });
  test::expect_contains(wrong, "\"eps\"");
  test::expect_contains(wrong, "integer");
  test::expect_contains(test::error_of([&] { config_int(config, "unset", path); }), "\"unset\"");
  test::expect_contains(test::error_of([&] { config_float(config, "name", path); }), "\"name\"");
  test::expect_contains(test::error_of([&] { config_int_list(config, "bad_list", path); }), "\"bad_list\"");
  test::expect_contains(test::error_of([&] { config_bool_list(config, "axes", path); }), "\"axes\"");
}

TEST(ModelLayoutJsonConfigTest, SyntaxErrorsNameTheFileAndPosition) {
  const fs::path dir = test::scratch_dir("layout_json_syntax");
  write_text(dir / "config.json", "{\n  \"layers\": 60,\n  \"eps\": oops\n}");
  const std::string message = test::error_of([&] { read_json_file(dir / "config.json"); });
  test::expect_contains(message, (dir / "config.json").string());
  test::expect_contains(message, "line 3");
  test::expect_contains(test::error_of([&] { read_json_file(dir / "absent.json"); }), "absent.json");
}

}  // namespace
}  // namespace canvas
