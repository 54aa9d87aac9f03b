#include "pipeline/torch_generator.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace canvas {
namespace {

// torch.randn outputs from the reference harness (tests/golden/README.md, section noise/).
const SafetensorsFile& golden() {
  static const SafetensorsFile file =
      SafetensorsFile::open(test::source_path("tests/golden/noise/golden.safetensors"));
  return file;
}

const nlohmann::json& manifest() {
  static const nlohmann::json json = read_json_file(test::source_path("tests/golden/noise/golden.json"));
  return json;
}

std::vector<float> golden_values(const std::string& name) {
  return golden().tensor(name).to_floats();
}

// Bit-for-bit equality: the point of the generator is that a seed reproduces the reference's noise exactly.
void expect_same_bits(const std::string& what, const std::vector<float>& ours,
                      const std::vector<float>& reference) {
  ASSERT_EQ(ours.size(), reference.size()) << what;
  int64_t mismatches = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (std::bit_cast<uint32_t>(ours[i]) == std::bit_cast<uint32_t>(reference[i])) continue;
    if (mismatches++ == 0) {
      ADD_FAILURE() << what << ": first difference at " << i << ": " << ours[i] << " vs torch "
                    << reference[i];
    }
  }
  EXPECT_EQ(mismatches, 0) << what << ": " << mismatches << " of " << ours.size() << " values differ";
}

std::vector<float> draw(TorchGenerator& generator, int64_t count) {
  std::vector<float> values(static_cast<size_t>(count));
  generator.randn(values.data(), count);
  return values;
}

TEST(TorchGenerator, FreshGeneratorMatchesTorchForEveryShape) {
  // The sizes straddle 16, where torch switches between its scalar and blocked samplers.
  const nlohmann::json& cases = manifest().at("cases");
  ASSERT_FALSE(cases.empty());
  for (const nlohmann::json& entry : cases) {
    const std::string key = entry.at("key").get<std::string>();
    TorchGenerator generator(entry.at("seed").get<uint64_t>());
    Tensor noise = generator.randn(entry.at("shape").get<Shape>());
    EXPECT_EQ(noise.shape(), golden().info(key).shape) << key;
    expect_same_bits(key, noise.to_floats(), golden_values(key));
  }
}

TEST(TorchGenerator, ConsecutiveCallsContinueTheState) {
  // Seed 98 also shows the scalar sampler's cached second value surviving a call of 16 or more.
  const nlohmann::json& sequences = manifest().at("sequential");
  ASSERT_FALSE(sequences.empty());
  for (const auto& [seed_text, counts] : sequences.items()) {
    TorchGenerator generator(std::stoull(seed_text));
    for (size_t call = 0; call < counts.size(); ++call) {
      const int64_t count = counts[call].get<int64_t>();
      const std::string key =
          "sequential_seed" + seed_text + ".call" + std::to_string(call) + "_n" + std::to_string(count);
      expect_same_bits(key, draw(generator, count), golden_values(key));
    }
  }
}

TEST(TorchGenerator, MatchesThePipelinesInitialNoise) {
  const nlohmann::json& cases = manifest().at("prepare_latents");
  ASSERT_FALSE(cases.empty());
  for (const nlohmann::json& entry : cases) {
    const std::string key = entry.at("key").get<std::string>() + ".unpacked";
    TorchGenerator generator(entry.at("seed").get<uint64_t>());
    expect_same_bits(key, generator.randn(entry.at("raw_shape").get<Shape>()).to_floats(),
                     golden_values(key));
  }
}

TEST(TorchGenerator, UsesOnlyTheLow32BitsOfTheSeed) {
  TorchGenerator low(42);
  TorchGenerator high((uint64_t{1} << 32) + 42);
  expect_same_bits("seed 2^32 + 42 against 42", draw(high, 40), draw(low, 40));
}

TEST(TorchGenerator, WholeBlocksDrawnSeparatelyEqualOneDraw) {
  // Without a partial block there is no tail to recompute, so the split does not matter.
  TorchGenerator split(7);
  std::vector<float> first = draw(split, 32);
  std::vector<float> second = draw(split, 48);
  first.insert(first.end(), second.begin(), second.end());
  TorchGenerator whole(7);
  expect_same_bits("32 + 48 against 80", first, draw(whole, 80));
}

TEST(TorchGenerator, EmptyDrawLeavesTheStateAlone) {
  TorchGenerator touched(3);
  touched.randn(nullptr, 0);
  TorchGenerator fresh(3);
  expect_same_bits("after an empty draw", draw(touched, 5), draw(fresh, 5));
}

TEST(TorchGenerator, TensorIsContiguousF32OfTheShape) {
  TorchGenerator generator(1);
  Tensor noise = generator.randn({2, 3, 4});
  EXPECT_EQ(noise.dtype(), DType::F32);
  EXPECT_EQ(noise.shape(), (Shape{2, 3, 4}));
  EXPECT_TRUE(noise.is_contiguous());
  TorchGenerator flat(1);
  expect_same_bits("shape only sets the count", noise.to_floats(), draw(flat, 24));
}

}  // namespace
}  // namespace canvas
