#include "io/weight_source.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

Tensor filled(const Shape& shape, float first) {
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = first + static_cast<float>(i);
  return Tensor::from_floats(values, shape);
}

float first_value(const Tensor& tensor) {
  return tensor.data<float>()[0];
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream stream(path);
  stream << text;
  EXPECT_TRUE(stream.good()) << "cannot write " << path;
}

// Two shards and their index, as transformers and diffusers write them.
fs::path write_sharded(const fs::path& dir) {
  write_safetensors(dir / "model-00001-of-00002.safetensors",
                    {{"layers.0.weight", filled({2, 2}, 0)}, {"layers.0.bias", filled({2}, 10)}});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"layers.1.weight", filled({2, 2}, 20)}});
  const fs::path index = dir / "model.safetensors.index.json";
  write_text(index, R"({"metadata": {"total_size": 40}, "weight_map": {
      "layers.0.weight": "model-00001-of-00002.safetensors",
      "layers.0.bias": "model-00001-of-00002.safetensors",
      "layers.1.weight": "model-00002-of-00002.safetensors"}})");
  return index;
}

TEST(WeightSourceTest, SingleFileLookupsAndSizes) {
  const fs::path path = test::scratch_dir("weights_single") / "model.safetensors";
  write_safetensors(path, {{"blocks.0.w", filled({2, 3}, 1)},
                           {"blocks.1.w", filled({4}, 7)},
                           {"norm", Tensor::empty({5}, DType::BF16)}});
  const WeightSource source = WeightSource::open(path);
  EXPECT_EQ(source.size(), 3u);
  EXPECT_EQ(source.names(), (std::vector<std::string>{"blocks.0.w", "blocks.1.w", "norm"}));
  EXPECT_TRUE(source.contains("norm"));
  EXPECT_FALSE(source.contains("blocks"));
  EXPECT_EQ(first_value(source.get("blocks.1.w")), 7.0f);
  EXPECT_EQ(source.get("blocks.0.w", {2, 3}).shape(), (Shape{2, 3}));
  EXPECT_EQ(source.dtype("norm"), DType::BF16);
  EXPECT_EQ(source.info("blocks.0.w").bytes(), 24);
  EXPECT_EQ(source.total_bytes(), 24 + 16 + 10);
  EXPECT_EQ(source.bytes_with_prefix("blocks."), 40);
  EXPECT_EQ(source.bytes_with_prefix("blocks.1"), 16);
  EXPECT_EQ(source.bytes_with_prefix("absent"), 0);
}

TEST(WeightSourceTest, ErrorsNameTheTensorTheSourceAndTheShapes) {
  const fs::path path = test::scratch_dir("weights_errors") / "model.safetensors";
  write_safetensors(
      path, {{"model.diffusion_model.proj.weight", filled({2, 3}, 0)}, {"proj.bias", filled({3}, 0)}});
  const WeightSource source = WeightSource::open(path);

  const std::string missing = test::error_of([&] { source.get("gamma"); });
  test::expect_contains(missing, "tensor 'gamma' not found in '" + path.string() + "' (2 tensors)");
  // A prefixed copy of the name hints at a missing rewrite.
  test::expect_contains(test::error_of([&] { source.get("proj.weight"); }),
                        "model.diffusion_model.proj.weight");

  const std::string shape = test::error_of([&] { source.get("proj.bias", {4}); });
  test::expect_contains(shape, "'proj.bias'");
  test::expect_contains(shape, "[3]");
  test::expect_contains(shape, "[4]");
}

TEST(WeightSourceTest, ShardedIndexOpensEachShardOnce) {
  const fs::path index = write_sharded(test::scratch_dir("weights_sharded"));
  for (const fs::path& given : {index, index.parent_path()}) {
    const WeightSource source = WeightSource::open(given);
    EXPECT_EQ(source.size(), 3u);
    EXPECT_EQ(first_value(source.get("layers.1.weight")), 20.0f);
    EXPECT_EQ(first_value(source.get("layers.0.bias")), 10.0f);
    EXPECT_EQ(source.get("layers.0.weight").buffer(), source.get("layers.0.bias").buffer());
    EXPECT_NE(source.get("layers.0.weight").buffer(), source.get("layers.1.weight").buffer());
    test::expect_contains(test::error_of([&] { source.get("layers.2.weight"); }), index.string());
  }
}

TEST(WeightSourceTest, ShardedIndexReportsMissingShards) {
  const fs::path dir = test::scratch_dir("weights_missing_shard");
  const fs::path index = write_sharded(dir);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  const std::string message = test::error_of([&] { WeightSource::open(index); });
  test::expect_contains(message, index.string());
  test::expect_contains(message, "model-00002-of-00002.safetensors (1 tensors)");
  EXPECT_EQ(message.find("00001-of"), std::string::npos) << message;
}

TEST(WeightSourceTest, ShardedIndexReportsTensorsMissingFromTheirShard) {
  const fs::path dir = test::scratch_dir("weights_misplaced");
  const fs::path index = write_sharded(dir);
  write_safetensors(dir / "model-00002-of-00002.safetensors", {{"layers.1.other", filled({1}, 0)}});
  const std::string message = test::error_of([&] { WeightSource::open(index); });
  test::expect_contains(message, index.string());
  test::expect_contains(message, "'layers.1.weight' (in model-00002-of-00002.safetensors)");
}

TEST(WeightSourceTest, ShardedIndexRejectsMalformedIndexes) {
  const fs::path dir = test::scratch_dir("weights_bad_index");
  write_sharded(dir);
  const fs::path index = dir / "model.safetensors.index.json";
  write_text(index, R"({"weight_map": {"a": 3}})");
  test::expect_contains(test::error_of([&] { WeightSource::open(index); }), "'a'");
  write_text(index, R"({"weight_map": {"a": "../elsewhere.safetensors"}})");
  test::expect_contains(test::error_of([&] { WeightSource::open(index); }), "outside its folder");
  write_text(index, R"({"metadata": {}})");
  test::expect_contains(test::error_of([&] { WeightSource::open(index); }), "weight_map");
  write_text(index, R"({"weight_map": )");
  test::expect_contains(test::error_of([&] { WeightSource::open(index); }), index.string());
}

TEST(WeightSourceTest, FolderWithoutIndexTakesEverySafetensorsFile) {
  const fs::path dir = test::scratch_dir("weights_folder");
  write_safetensors(dir / "a.safetensors", {{"x", filled({1}, 1)}});
  write_safetensors(dir / "b.safetensors", {{"y", filled({1}, 2)}});
  write_text(dir / "notes.txt", "not weights");
  const WeightSource source = WeightSource::open(dir);
  EXPECT_EQ(source.names(), (std::vector<std::string>{"x", "y"}));

  write_safetensors(dir / "c.safetensors", {{"x", filled({1}, 3)}});
  const std::string duplicate = test::error_of([&] { WeightSource::open(dir); });
  test::expect_contains(duplicate, "a.safetensors");
  test::expect_contains(duplicate, "c.safetensors");

  const fs::path empty = test::scratch_dir("weights_empty_folder");
  test::expect_contains(test::error_of([&] { WeightSource::open(empty); }), "no .safetensors files");
  test::expect_contains(test::error_of([&] { WeightSource::open(empty / "absent.safetensors"); }),
                        "do not exist");
}

TEST(WeightSourceTest, FolderWithSeveralIndexesAsksForOne) {
  const fs::path dir = test::scratch_dir("weights_two_indexes");
  write_sharded(dir);
  fs::copy_file(dir / "model.safetensors.index.json", dir / "model.fp16.safetensors.index.json");
  test::expect_contains(test::error_of([&] { WeightSource::open(dir); }), "several checkpoint indexes");
}

TEST(WeightSourceTest, RewritesApplyTheFirstMatchingRule) {
  const std::vector<NameRewrite> rules = {{"model.diffusion_model.", ""}, {"model.", "other."}};
  EXPECT_EQ(rewrite_name("model.diffusion_model.img_in.weight", rules), "img_in.weight");
  EXPECT_EQ(rewrite_name("model.norm.weight", rules), "other.norm.weight");
  EXPECT_EQ(rewrite_name("lm_head.weight", rules), "lm_head.weight");

  const fs::path path = test::scratch_dir("weights_rewrites") / "comfy.safetensors";
  write_safetensors(path,
                    {{"model.diffusion_model.img_in.weight", filled({2}, 5)}, {"vae.w", filled({1}, 0)}});
  const WeightSource source = WeightSource::open(path, rules);
  EXPECT_EQ(source.names(), (std::vector<std::string>{"img_in.weight", "vae.w"}));
  EXPECT_EQ(first_value(source.get("img_in.weight")), 5.0f);
}

TEST(WeightSourceTest, RewritesThatMergeTwoNamesAreRejected) {
  const fs::path path = test::scratch_dir("weights_rewrite_collision") / "model.safetensors";
  write_safetensors(path, {{"a.w", filled({1}, 0)}, {"b.w", filled({1}, 0)}});
  const std::string message = test::error_of([&] { WeightSource::open(path, {{"a.", "b."}}); });
  test::expect_contains(message, "'b.w'");
  test::expect_contains(message, "'a.w'");
}

TEST(WeightSourceTest, SubsetStripsThePrefixAndSharesTheFiles) {
  const fs::path path = test::scratch_dir("weights_subset") / "model.safetensors";
  write_safetensors(path, {{"transformer_blocks.0.w", filled({3}, 1)},
                           {"transformer_blocks.1.w", filled({5}, 2)},
                           {"transformer_blocks_extra", filled({1}, 3)}});
  const WeightSource source = WeightSource::open(path);
  const WeightSource block = source.subset("transformer_blocks.1.");
  EXPECT_EQ(block.names(), (std::vector<std::string>{"w"}));
  EXPECT_EQ(block.total_bytes(), 20);
  EXPECT_EQ(block.get("w").raw_data(), source.get("transformer_blocks.1.w").raw_data());
  test::expect_contains(test::error_of([&] { block.get("v"); }), "transformer_blocks.1.");
  EXPECT_EQ(source.subset("transformer_blocks.").size(), 2u);
}

TEST(WeightSourceTest, TensorsOutliveTheSource) {
  const fs::path path = test::scratch_dir("weights_lifetime") / "model.safetensors";
  write_safetensors(path, {{"w", filled({4}, 42)}});
  Tensor kept;
  {
    const WeightSource source = WeightSource::open(path);
    kept = source.subset("").get("w");
  }
  EXPECT_EQ(kept.to_floats(), (std::vector<float>{42, 43, 44, 45}));
}

}  // namespace
}  // namespace canvas
