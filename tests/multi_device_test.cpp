// Jobs spread over several devices, on the CPU: cpu:1 and cpu:2 are simulated device pools (host memory
// under allocators of their own), so every placement and exchange runs here as it would across GPUs.
// Splitting the blocks or the components must not change a bit; splitting the tokens stays within the
// fp32 tolerance.
#include <gtest/gtest.h>

#include <set>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "pipeline/text_to_image.h"
#include "pipeline/ulysses_attention.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kSecond{DeviceType::CPU, 1};
const Device kThird{DeviceType::CPU, 2};

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (float& value : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    value = static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
  }
  return Tensor::from_floats(values, shape);
}

TEST(CopyCommunicator, DeliversEveryPairToItsDevice) {
  const std::vector<Device> devices = {Device::cpu(), kSecond, kThird};
  std::unique_ptr<Communicator> communicator = create_communicator(devices);
  std::vector<std::vector<Tensor>> sends(3);
  for (size_t from = 0; from < 3; ++from) {
    for (size_t to = 0; to < 3; ++to)
      sends[from].push_back(
          random_tensor({2, static_cast<int64_t>(to + 1)}, from * 3 + to).to(devices[from]));
  }
  std::vector<std::vector<Tensor>> received = communicator->all_to_all(sends);
  for (size_t to = 0; to < 3; ++to) {
    for (size_t from = 0; from < 3; ++from) {
      EXPECT_EQ(received[to][from].device(), devices[to]);
      EXPECT_TRUE(test::bit_identical(received[to][from], sends[from][to]));
    }
  }
  // A tensor on the wrong device, or a missing row, is refused with the reason.
  sends[1][0] = sends[0][0];
  EXPECT_NE(
      test::error_of([&] { communicator->all_to_all(sends); }).find("rank 1 on cpu:1 sends a tensor on cpu"),
      std::string::npos);
  sends.pop_back();
  EXPECT_NE(test::error_of([&] { communicator->all_to_all(sends); }).find("was given 2 rows"),
            std::string::npos);
}

TEST(ShareTokens, ContiguousNearEqualSharesCoverEveryToken) {
  const std::vector<TokenShare> shares = share_tokens(5, 7, 3);
  ASSERT_EQ(shares.size(), 3u);
  EXPECT_EQ(shares[0].text_tokens(), 2);
  EXPECT_EQ(shares[2].text_tokens(), 1);
  EXPECT_EQ(shares[0].image_tokens(), 3);
  EXPECT_EQ(shares[2].image_tokens(), 2);
  for (size_t d = 1; d < 3; ++d) {
    EXPECT_EQ(shares[d].text_begin, shares[d - 1].text_end);
    EXPECT_EQ(shares[d].image_begin, shares[d - 1].image_end);
  }
  EXPECT_EQ(shares[2].text_end, 5);
  EXPECT_EQ(shares[2].image_end, 7);
}

// Each device's rows of ulysses_attention against joint_attention over the whole sequence on one device.
void expect_ulysses_matches_one_device(int64_t text_tokens, int64_t image_tokens, int devices_count) {
  const int64_t heads = 6, head_dim = 8, tokens = text_tokens + image_tokens;
  SCOPED_TRACE(std::to_string(text_tokens) + " text, " + std::to_string(image_tokens) + " image tokens on " +
               std::to_string(devices_count) + " devices");
  JointProjections whole{random_tensor({1, tokens, heads, head_dim}, 1),
                         random_tensor({1, tokens, heads, head_dim}, 2),
                         random_tensor({1, tokens, heads, head_dim}, 3)};
  // The last text token is padding: a key no query may attend.
  std::vector<float> mask_values(static_cast<size_t>(tokens), 1.0f);
  mask_values[static_cast<size_t>(text_tokens - 1)] = 0.0f;
  const Tensor mask = Tensor::from_floats(mask_values, {1, tokens});
  const Tensor expected = joint_attention(whole, mask);

  const std::vector<Device> all = {Device::cpu(), kSecond, kThird};
  const std::vector<Device> devices(all.begin(), all.begin() + devices_count);
  std::unique_ptr<Communicator> communicator = create_communicator(devices);
  const std::vector<TokenShare> shares = share_tokens(text_tokens, image_tokens, devices_count);
  std::vector<JointProjections> projections;
  std::vector<Tensor> masks;
  for (int d = 0; d < devices_count; ++d) {
    const TokenShare& share = shares[d];
    auto own = [&](const Tensor& x) {
      Tensor rows[] = {x.slice(1, share.text_begin, share.text_end),
                       x.slice(1, text_tokens + share.image_begin, text_tokens + share.image_end)};
      return ops::concat(rows, 1).to(devices[d]);
    };
    projections.push_back({own(whole.query), own(whole.key), own(whole.value)});
    masks.push_back(mask.to(devices[d]));
  }
  std::vector<Tensor> attention = ulysses_attention(*communicator, projections, shares, masks);
  ASSERT_EQ(attention.size(), static_cast<size_t>(devices_count));
  for (int d = 0; d < devices_count; ++d) {
    const TokenShare& share = shares[d];
    Tensor rows[] = {expected.slice(1, share.text_begin, share.text_end),
                     expected.slice(1, text_tokens + share.image_begin, text_tokens + share.image_end)};
    EXPECT_EQ(attention[d].device(), devices[d]);
    EXPECT_LE(test::relative_error(attention[d], ops::concat(rows, 1)), 1e-6) << "device " << d;
  }
}

TEST(UlyssesAttention, EachDeviceGetsItsTokensAttendedOverTheWholeSequence) {
  expect_ulysses_matches_one_device(5, 7, 2);
  expect_ulysses_matches_one_device(5, 7, 3);
  // Fewer text tokens than devices: one device holds image tokens only.
  expect_ulysses_matches_one_device(2, 9, 3);
}

TEST(UlyssesAttention, HeadsThatDoNotDivideAreRefused) {
  std::unique_ptr<Communicator> communicator = create_communicator({Device::cpu(), kSecond});
  JointProjections one{random_tensor({1, 3, 3, 4}, 1), random_tensor({1, 3, 3, 4}, 2),
                       random_tensor({1, 3, 3, 4}, 3)};
  JointProjections two{one.query.to(kSecond), one.key.to(kSecond), one.value.to(kSecond)};
  const std::string message = test::error_of([&] {
    ulysses_attention(*communicator, {one, two}, share_tokens(2, 4, 2), {Tensor(), Tensor()});
  });
  EXPECT_NE(message.find("3 attention heads cannot be shared among 2 devices"), std::string::npos) << message;
}

// The golden transformer of diffusers (4 heads, an odd 15 image tokens, 6 text tokens with padding) with
// its tokens split over 2 and 4 ranks.
TEST(SequenceParallelTransformer, MatchesTheReferenceWithAMaskAndUnevenShares) {
  const std::string folder = "transformer/t2_nonsquare_odd";
  QwenImageTransformer2DModel model(
      QwenImageTransformerConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json"),
      test::open_golden_model(folder));
  WeightSource golden = test::open_golden(folder);
  const std::vector<ImageShape> shapes = {{1, 3, 5}};
  const Tensor mask = golden.get("encoder_hidden_states_mask").to(DType::F32);
  const Tensor single = model.forward(golden.get("hidden_states"), golden.get("encoder_hidden_states"), mask,
                                      golden.get("timestep"), shapes);
  for (int ranks : {2, 4}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    const Tensor split = test::sequence_parallel_forward(
        model, std::vector<Device>(static_cast<size_t>(ranks), Device::cpu()), golden.get("hidden_states"),
        golden.get("encoder_hidden_states"), mask, golden.get("timestep").to_floats()[0], shapes);
    const double to_reference = test::relative_error(split, golden.get("sample"));
    const double to_single = test::relative_error(split, single);
    std::printf("sequence parallel, %d ranks: %.3g from the reference, %.3g from one rank\n", ranks,
                to_reference, to_single);
    EXPECT_LE(to_reference, 1e-4);
    EXPECT_LE(to_single, 1e-5);
  }
}

class MultiDevicePipeline : public test::TinyPipelineSuite {
 protected:
  static JobResult run(Parallelism parallelism, Strategy strategy = Strategy::Auto) {
    MemoryOptions options;
    options.plan.parallelism = parallelism;
    options.plan.strategy = strategy;
    options.extra_devices = {kSecond};
    allocator_for(kSecond).reset_peak();
    JobResult result = text_to_image(*model_, request_, options);
    for (const std::string& line : result.plan.describe()) std::printf("  %s\n", line.c_str());
    return result;
  }
};

TEST_F(MultiDevicePipeline, PipelineSplitHandsTheHiddenStatesOnAndIsBitIdentical) {
  JobResult result = run(Parallelism::Pipeline);
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  ASSERT_EQ(transformer.spread, Spread::Pipeline);
  ASSERT_EQ(transformer.shares.size(), 2u);
  EXPECT_EQ(transformer.shares[1].device, kSecond);
  EXPECT_GT(allocator_for(kSecond).peak(), 0);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
  EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
  EXPECT_NE(result.plan.describe()[2].find("pipeline split: cpu blocks 0-0"), std::string::npos);
  EXPECT_NE(result.plan.describe()[2].find("cpu:1 blocks 1-1"), std::string::npos);
}

TEST_F(MultiDevicePipeline, ComponentsOnDifferentDevicesAreBitIdentical) {
  JobResult result = run(Parallelism::Components);
  std::set<std::string> devices;
  for (const ComponentPlan& part : result.plan.components)
    devices.insert(part.device_or(Device::cpu()).str());
  EXPECT_EQ(devices.size(), 2u);
  EXPECT_GT(allocator_for(kSecond).peak(), 0);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
  EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
}

TEST_F(MultiDevicePipeline, SequenceParallelStaysWithinTheFp32Tolerance) {
  JobResult result = run(Parallelism::Sequence);
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  ASSERT_EQ(transformer.spread, Spread::Sequence);
  EXPECT_GT(allocator_for(kSecond).peak(), 0);
  const double latents_error = test::relative_error(result.latents, reference_->latents);
  const double image_error = test::relative_error(result.image, reference_->image);
  std::printf("sequence parallel over 2 devices: latents %.3g, image %.3g from one device\n", latents_error,
              image_error);
  EXPECT_LE(latents_error, 1e-4);
  EXPECT_LE(image_error, 1e-4);

  // Streaming every block on both devices changes where the weights are, not a bit of the result.
  JobResult streamed = run(Parallelism::Sequence, Strategy::SequentialOffload);
  EXPECT_EQ(streamed.plan.component(Component::Transformer).resident_blocks, 0);
  EXPECT_GT(streamed.bytes_streamed, 0);
  EXPECT_TRUE(test::bit_identical(streamed.latents, result.latents));
}

TEST_F(MultiDevicePipeline, CfgParallelRunsEachGuidanceHalfOnItsOwnDeviceBitIdentically) {
  JobResult result = run(Parallelism::Guidance);
  const ComponentPlan& transformer = result.plan.component(Component::Transformer);
  ASSERT_EQ(transformer.spread, Spread::Guidance);
  EXPECT_GT(allocator_for(kSecond).peak(), 0);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
  EXPECT_TRUE(test::bit_identical(result.image, reference_->image));
}

TEST_F(MultiDevicePipeline, NoneLeavesTheSecondDeviceUntouched) {
  JobResult result = run(Parallelism::None);
  EXPECT_EQ(allocator_for(kSecond).peak(), 0);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
}

TEST_F(MultiDevicePipeline, TheSecondDevicesBudgetIsKept) {
  // Every device gets the same budget (beside the backend's scratch); the split keeps each within it.
  const int64_t budget = backend_for(kSecond).scratch_reserve_bytes() + (int64_t{11} << 20);
  MemoryOptions options;
  options.extra_devices = {kSecond};
  options.plan.parallelism = Parallelism::Pipeline;
  options.device_budget_bytes = budget;
  allocator_for(Device::cpu()).reset_peak();
  allocator_for(kSecond).reset_peak();
  JobResult result = text_to_image(*model_, request_, options);
  for (const PoolUse& pool : result.plan.pools) EXPECT_LE(pool.predicted_peak_bytes, pool.budget);
  EXPECT_GT(allocator_for(kSecond).peak(), 0);
  EXPECT_LE(allocator_for(kSecond).peak(), budget);
  EXPECT_TRUE(test::bit_identical(result.latents, reference_->latents));
}

}  // namespace
}  // namespace canvas
