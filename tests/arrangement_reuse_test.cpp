// Weights an earlier job left arranged serve the next job where its plan places them the same way: a job
// of another size takes every component over, a job of another model takes the networks the models share
// (app/residency.h), and what is taken over computes exactly what freshly arranged weights compute.
#include <gtest/gtest.h>

#include <fstream>

#include "app/residency.h"
#include "memory/fault_injection.h"
#include "pipeline/text_to_image.h"
#include "serve_fixture.h"
#include "test_util.h"

namespace canvas {
namespace {

TextToImageRequest small_request(int64_t width, int64_t height) {
  TextToImageRequest request;
  request.sampling.prompt = "a lighthouse at dusk";
  request.sampling.steps = 2;
  request.sampling.seed = 5;
  request.width = width;
  request.height = height;
  return request;
}

MemoryOptions full_options() {
  MemoryOptions options;
  options.plan.strategy = Strategy::Bf16Full;
  return options;
}

TEST(ArrangementReuse, AJobOfAnotherSizeTakesEveryComponentOver) {
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu());
  ArrangementCache cache;
  const JobResult first = text_to_image(model, small_request(32, 32), full_options(), {}, &cache);
  EXPECT_TRUE(first.reused_components.empty());
  const JobResult second = text_to_image(model, small_request(48, 32), full_options(), {}, &cache);
  EXPECT_EQ(second.reused_components, (std::vector<std::string>{"text_encoder", "transformer", "vae"}));
  const JobResult fresh = text_to_image(model, small_request(48, 32), full_options());
  EXPECT_TRUE(test::bit_identical(second.latents, fresh.latents));
  EXPECT_TRUE(test::bit_identical(second.image, fresh.image));
  // A job of the same shape takes the whole arrangement.
  const JobResult third = text_to_image(model, small_request(48, 32), full_options(), {}, &cache);
  EXPECT_EQ(third.reused_components, second.reused_components);
}

TEST(ArrangementReuse, AnotherStrategyArrangesAgain) {
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu());
  ArrangementCache cache;
  text_to_image(model, small_request(32, 32), full_options(), {}, &cache);
  MemoryOptions streamed;
  streamed.plan.strategy = Strategy::SequentialOffload;
  const JobResult second = text_to_image(model, small_request(32, 32), streamed, {}, &cache);
  const JobResult fresh = text_to_image(model, small_request(32, 32), streamed);
  EXPECT_EQ(std::count(second.reused_components.begin(), second.reused_components.end(), "transformer"), 0);
  EXPECT_TRUE(test::bit_identical(second.latents, fresh.latents));
}

// What a job does not use stays parked (room allowing) for a later job: a LoRA job after a plain one takes
// the LoRA's text encoder and transformer back from the job before; an allocation failure releases the
// parked weights first.
TEST(ArrangementReuse, UnusedComponentsStayParkedForALaterJob) {
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), Device::cpu());
  const std::vector<LoraChoice> lora = {
      {test::source_path("tests/golden/lora/loras/peft.safetensors"), 1.0f}};
  ArrangementCache cache;
  TextToImageRequest with_lora = small_request(32, 32);
  with_lora.sampling.loras = lora;
  text_to_image(model, with_lora, full_options(), {}, &cache);
  const JobResult plain = text_to_image(model, small_request(32, 32), full_options(), {}, &cache);
  EXPECT_EQ(plain.reused_components, std::vector<std::string>{"vae"});
  ASSERT_EQ(cache.parked.size(), 1u);
  const JobResult again = text_to_image(model, with_lora, full_options(), {}, &cache);
  EXPECT_EQ(again.reused_components, (std::vector<std::string>{"text_encoder", "transformer", "vae"}));
  EXPECT_TRUE(test::bit_identical(again.latents, text_to_image(model, with_lora, full_options()).latents));

  // Parked: the plain job's text encoder and transformer. A failure releases them before any rung.
  ASSERT_EQ(cache.parked.size(), 1u);
  FaultInjector::instance().configure("1");
  const JobResult recovered = text_to_image(model, with_lora, full_options(), {}, &cache);
  FaultInjector::instance().configure("");
  ASSERT_FALSE(recovered.recoveries.empty());
  test::expect_contains(recovered.recoveries.front(), "of weights parked for later jobs");
  EXPECT_TRUE(cache.parked.empty());
  const JobResult after = text_to_image(model, small_request(32, 32), full_options(), {}, &cache);
  EXPECT_EQ(after.reused_components, std::vector<std::string>{"vae"});
}

// Two models whose text encoder and VAE are the same files (here: two entries for one folder) hold them
// once, and a job of one takes over what a job of the other arranged of them.
TEST(ArrangementReuse, ModelsShareIdenticalNetworksAndTheirArrangements) {
  const std::filesystem::path folder = test::scratch_dir("arrangement-reuse");
  std::filesystem::create_directory_symlink(test::source_path("models/tiny-qwen-image"), folder / "a");
  std::filesystem::create_directory_symlink(test::source_path("models/tiny-qwen-image"), folder / "b");
  app::ModelRegistry registry({folder}, std::nullopt);
  app::ModelResidency residency(Device::cpu(), std::nullopt);
  const std::shared_ptr<const QwenImageModel> a = residency.acquire(registry.find("a"));
  const std::shared_ptr<const QwenImageModel> b = residency.acquire(registry.find("b"));
  EXPECT_EQ(a->text_encoder, b->text_encoder);
  EXPECT_EQ(a->vae, b->vae);
  EXPECT_NE(a->transformer, b->transformer);
  const nlohmann::json described = residency.describe();
  EXPECT_EQ(described[1].at("shared"), nlohmann::json({"text_encoder (with a)", "vae (with a)"}));

  text_to_image(*a, small_request(32, 32), full_options(), {}, &residency.arrangements());
  const JobResult on_b =
      text_to_image(*b, small_request(32, 32), full_options(), {}, &residency.arrangements());
  EXPECT_EQ(on_b.reused_components, (std::vector<std::string>{"text_encoder", "vae"}));
  const JobResult fresh = text_to_image(*b, small_request(32, 32), full_options());
  EXPECT_TRUE(test::bit_identical(on_b.image, fresh.image));
}

// A copy of the files (other inodes) is found identical from its tensors' bytes; a copy with one tensor
// changed is not.
TEST(ArrangementReuse, IdenticalNetworksAreFoundFromTheirBytes) {
  const std::filesystem::path folder = test::scratch_dir("arrangement-reuse-copies");
  const std::filesystem::path tiny = test::source_path("models/tiny-qwen-image");
  std::filesystem::copy(tiny, folder / "a", std::filesystem::copy_options::recursive);
  std::filesystem::copy(tiny, folder / "b", std::filesystem::copy_options::recursive);
  // b's VAE differs in one byte of its last tensor's data.
  const std::filesystem::path vae = folder / "b" / "vae" / "diffusion_pytorch_model.safetensors";
  ASSERT_TRUE(std::filesystem::exists(vae));
  {
    std::fstream file(vae, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(-1, std::ios::end);
    const char last = static_cast<char>(file.get());
    file.seekp(-1, std::ios::end);
    file.put(static_cast<char>(last ^ 0x10));
  }
  // The digests are remembered by the files: this test's own cache folder.
  ::setenv("CANVAS_CACHE_DIR", (folder / "cache").c_str(), 1);
  app::ModelRegistry registry({folder}, std::nullopt);
  for (int load = 0; load < 2; ++load) {
    app::ModelResidency residency(Device::cpu(), std::nullopt);
    const std::shared_ptr<const QwenImageModel> a = residency.acquire(registry.find("a"));
    const std::shared_ptr<const QwenImageModel> b = residency.acquire(registry.find("b"));
    EXPECT_EQ(a->text_encoder, b->text_encoder);
    EXPECT_NE(a->vae, b->vae);
  }
  const nlohmann::json digests =
      nlohmann::json::parse(test::read_file_bytes(folder / "cache" / "network_digests.json"));
  EXPECT_EQ(digests.size(), 4u);  // both models' text encoder and VAE
  ::unsetenv("CANVAS_CACHE_DIR");
}

}  // namespace
}  // namespace canvas
