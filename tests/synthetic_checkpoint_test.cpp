// canvas-synthetic-checkpoint end to end: a shrunk instance of the full folder loads and generates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "image/decode.h"
#include "io/json_config.h"
#include "io/model_layout.h"
#include "io/png_image.h"
#include "io/weight_source.h"
#include "models/qwen2_5_vl_vision.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

// Every width shrunk to one 128-wide head and the VAE to 4 base channels; the vocabulary, the
// tokenizer and every tensor name stay those of the full model.
const std::string kSmallSizes = "--layers 1 --heads 1 --text-layers 1 --text-heads 1 --vae-base-dim 4";

TEST(SyntheticCheckpoint, SmallCompleteFolderLoadsAndGenerates) {
  fs::path folder = test::scratch_dir("synthetic-checkpoint") / "model";
  test::CommandResult written = test::run_built_program("tools/canvas-synthetic-checkpoint",
                                                        "--output " + folder.string() + " " + kSmallSizes);
  ASSERT_EQ(written.exit_code, 0) << written.output;
  for (const char* file : {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json",
                           "tokenizer/tokenizer_config.json", "transformer/config.json",
                           "text_encoder/config.json", "vae/config.json"}) {
    EXPECT_TRUE(fs::is_regular_file(folder / file)) << file;
  }
  WeightSource text_encoder = WeightSource::open(folder / "text_encoder");
  EXPECT_TRUE(text_encoder.contains("lm_head.weight"));
  EXPECT_FALSE(text_encoder.contains("model.visual.patch_embed.proj.weight"));
  WeightSource vae = WeightSource::open(folder / "vae");
  EXPECT_TRUE(vae.contains("decoder.up_blocks.0.upsamplers.0.time_conv.weight"));

  // Two steps: the published scheduler's shift_terminal leaves a single step undefined.
  fs::path image = folder.parent_path() / "generated.png";
  test::CommandResult generated =
      test::run_built_program("src/canvas", "generate --model " + folder.string() +
                                                " --prompt 'a lighthouse' --steps 2 --width 32 --height 32 "
                                                "--output " +
                                                image.string());
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  ASSERT_TRUE(fs::is_regular_file(image));
  RgbImage png = read_image(image).rgb;
  EXPECT_EQ(png.width, 32);
  EXPECT_EQ(png.height, 32);
}

// The Qwen-Image-Edit-2511 layout, written as sparse zeros: the published class name and processor/, the
// transformer's zero_cond_t, and every vision-tower tensor beside the language model under the same
// naming style, at the shapes the vision config gives.
TEST(SyntheticCheckpoint, EditPlusFolderHasProcessorAndVisionTower) {
  fs::path folder = test::scratch_dir("synthetic-checkpoint-edit") / "model";
  test::CommandResult written =
      test::run_built_program("tools/canvas-synthetic-checkpoint",
                              "--output " + folder.string() + " --pipeline edit-plus --zeros " + kSmallSizes);
  ASSERT_EQ(written.exit_code, 0) << written.output;

  ModelLayout layout = resolve_model(folder);
  EXPECT_EQ(layout.pipeline_class, "QwenImageEditPlusPipeline");
  EXPECT_EQ(layout.model_index["processor"], nlohmann::json({"transformers", "Qwen2VLProcessor"}));
  for (const char* file : {"processor/tokenizer.json", "processor/tokenizer_config.json"}) {
    EXPECT_TRUE(fs::is_regular_file(folder / file)) << file;
  }
  const nlohmann::json preprocessor = read_json_file(folder / "processor" / "preprocessor_config.json");
  EXPECT_EQ(preprocessor["image_processor_type"], "Qwen2VLImageProcessor");
  EXPECT_EQ(preprocessor["processor_class"], "Qwen2VLProcessor");
  Qwen2VLImageProcessorConfig processor =
      Qwen2VLImageProcessorConfig::from_file(folder / "processor" / "preprocessor_config.json");
  EXPECT_EQ(processor.min_pixels, 3136);
  EXPECT_EQ(processor.max_pixels, 12845056);
  EXPECT_EQ(processor.patch_size, 14);
  EXPECT_EQ(processor.merge_size, 2);
  EXPECT_EQ(processor.temporal_patch_size, 2);
  EXPECT_TRUE(QwenImageTransformerConfig::from_file(folder / "transformer" / "config.json").zero_cond_t);

  const ComponentLayout& text_encoder = layout.component("text_encoder");
  WeightSource weights = text_encoder.open_weights();
  EXPECT_TRUE(weights.contains("model.language_model.norm.weight"));
  EXPECT_TRUE(weights.contains("lm_head.weight"));
  Qwen2_5_VLVisionConfig vision = Qwen2_5_VLVisionConfig::from_file(text_encoder.config_file);
  EXPECT_EQ(vision.depth, 32);
  EXPECT_EQ(vision.hidden_size, 1280);
  EXPECT_EQ(vision.out_hidden_size, 128);  // the shrunk text model's hidden size
  const auto vision_tensors = Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(vision);
  for (const auto& [name, shape] : vision_tensors) {
    ASSERT_TRUE(weights.contains(name)) << name;
    EXPECT_EQ(weights.info(name).shape, shape) << name;
  }
  const std::vector<std::string> names = weights.names();
  EXPECT_EQ(std::count_if(names.begin(), names.end(),
                          [](const std::string& name) { return name.starts_with("model.visual."); }),
            static_cast<std::ptrdiff_t>(vision_tensors.size()));
}

TEST(SyntheticCheckpoint, ShardsGetAnIndex) {
  fs::path folder = test::scratch_dir("synthetic-checkpoint-shards") / "model";
  // A limit below the embedding's 39 MB puts every large tensor in a shard of its own.
  test::CommandResult written = test::run_built_program(
      "tools/canvas-synthetic-checkpoint",
      "--output " + folder.string() + " " + kSmallSizes + " --components text_encoder --shard-gib 0.01");
  ASSERT_EQ(written.exit_code, 0) << written.output;
  EXPECT_TRUE(fs::is_regular_file(folder / "text_encoder" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::is_regular_file(folder / "text_encoder" / "model-00001-of-00004.safetensors"));
  EXPECT_FALSE(fs::exists(folder / "transformer"));
  EXPECT_TRUE(WeightSource::open(folder / "text_encoder").contains("model.language_model.norm.weight"));
}

TEST(SyntheticCheckpoint, MissingTokenizerFailsClearly) {
  fs::path folder = test::scratch_dir("synthetic-checkpoint-no-tokenizer") / "model";
  test::CommandResult written =
      test::run_built_program("tools/canvas-synthetic-checkpoint",
                              "--output " + folder.string() + " --tokenizer /nonexistent/tokenizer");
  EXPECT_EQ(written.exit_code, 1);
  test::expect_contains(written.output, "/nonexistent/tokenizer");
}

}  // namespace
}  // namespace canvas
