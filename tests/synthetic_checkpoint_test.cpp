// canvas-synthetic-checkpoint end to end: a shrunk instance of the full folder loads and generates.
#include <gtest/gtest.h>

#include <cstdio>

#include "image/decode.h"
#include "io/png_image.h"
#include "io/weight_source.h"
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
