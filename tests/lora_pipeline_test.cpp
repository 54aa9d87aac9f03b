// Whole jobs with LoRAs on the tiny models against diffusers' load_lora_weights (tests/golden/lora/,
// tools/reference/make_lora_goldens.py): every key style, alpha != rank, two LoRAs at once, LyCORIS
// differences and the Lightning recipe (a fixed scheduler shift of 3, no CFG), on text-to-image and
// EditPlus. Each case runs twice: the LoRAs computed beside the mapped weights, and folded into weights a
// placement holds whole (bf16_full puts the tiny model's weights in allocator memory on the CPU too).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>

#include "image/decode.h"
#include "io/lora_file.h"
#include "io/safetensors.h"
#include "pipeline/image_edit.h"
#include "pipeline/job_facts.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr double kLatentTolerance = 1e-4;
constexpr double kImageTolerance = 2.0;  // in 1/255 steps

std::string folder_of(const std::string& name) {
  return "lora/" + name;
}

std::map<std::string, std::unique_ptr<QwenImageModel>>& loaded_models() {
  static std::map<std::string, std::unique_ptr<QwenImageModel>> models;
  return models;
}

const QwenImageModel& model_for(const nlohmann::json& parameters) {
  const std::string path = parameters.at("model").get<std::string>();
  std::unique_ptr<QwenImageModel>& model = loaded_models()[path];
  if (!model)
    model = std::make_unique<QwenImageModel>(load_qwen_image(test::source_path(path), Device::cpu()));
  return *model;
}

std::vector<LoraChoice> golden_loras(const nlohmann::json& parameters) {
  std::vector<LoraChoice> loras;
  for (const nlohmann::json& lora : parameters.at("loras")) {
    loras.push_back({test::source_path("tests/golden/lora/" + lora.at("file").get<std::string>()),
                     lora.at("adapter_weight").get<float>()});
  }
  return loras;
}

std::optional<double> golden_shift(const nlohmann::json& parameters) {
  if (parameters.at("scheduler").get<std::string>() != "lightning") return std::nullopt;
  return 3.0;
}

double largest_pixel_difference(const Tensor& ours, const Tensor& reference) {
  const std::vector<float> a = ours.to_floats(), b = reference.to_floats();
  double largest = 0;
  for (size_t i = 0; i < a.size(); ++i)
    largest = std::max(largest, std::fabs(static_cast<double>(a[i]) - b[i]) * 255.0);
  return largest;
}

JobResult run_case(const std::string& name, const MemoryOptions& options, float strength_factor = 1.0f) {
  const nlohmann::json parameters = test::golden_json(folder_of(name));
  const QwenImageModel& model = model_for(parameters);
  std::vector<LoraChoice> loras = golden_loras(parameters);
  for (LoraChoice& lora : loras) lora.strength *= strength_factor;
  if (parameters.at("pipeline_class").get<std::string>() == "QwenImageEditPlusPipeline") {
    ImageEditRequest request;
    request.sampling = test::golden_sampling(parameters);
    request.areas = {parameters.at("condition_area").get<int64_t>(), parameters.at("vae_area").get<int64_t>(),
                     parameters.at("output_area").get<int64_t>()};
    // diffusers 0.42 under transformers 5 passes no mm_token_type_ids (see tests/edit_pipeline_test.cpp).
    request.text_positions = TextPositions::Sequential;
    for (const nlohmann::json& file : parameters.at("images")) {
      request.images.push_back(
          read_image(test::source_path("tests/golden/" + folder_of(name) + "/" + file.get<std::string>()))
              .rgb);
    }
    request.sampling.loras = loras;
    request.sampling.scheduler_shift = golden_shift(parameters);
    return image_edit(model, request, options);
  }
  TextToImageRequest request = test::golden_request(parameters);
  request.sampling.loras = loras;
  request.sampling.scheduler_shift = golden_shift(parameters);
  return text_to_image(model, request, options);
}

class LoraPipelineGolden : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() { loaded_models().clear(); }

  void expect_matches(const std::string& how, const JobResult& result) const {
    const WeightSource golden = test::open_golden(folder_of(GetParam()));
    const double latent_error = test::relative_error(result.latents, golden.get("latents"));
    const double pixels = largest_pixel_difference(result.image, golden.get("image"));
    std::printf("[   LoRA   ] %-26s %-8s latents %.3g, image within %.3f/255 (%d layers, %d merged)\n",
                GetParam().c_str(), how.c_str(), latent_error, pixels, result.lora_layers,
                result.lora_layers_merged);
    EXPECT_LE(latent_error, kLatentTolerance) << how;
    EXPECT_LE(pixels, kImageTolerance) << how;
    EXPECT_GT(result.lora_layers, 0);
  }
};

TEST_P(LoraPipelineGolden, BesideTheWeightsMatchesDiffusers) {
  MemoryOptions options;
  options.lora_apply = LoraApply::RunTime;
  const JobResult result = run_case(GetParam(), options);
  expect_matches("beside", result);
  EXPECT_EQ(result.lora_layers_merged, 0);
}

TEST_P(LoraPipelineGolden, MergedIntoPlacedWeightsMatchesDiffusers) {
  MemoryOptions options;
  options.plan.strategy = Strategy::Bf16Full;
  const JobResult result = run_case(GetParam(), options);
  expect_matches("merged", result);
  EXPECT_EQ(result.lora_layers_merged, result.lora_layers);
}

INSTANTIATE_TEST_SUITE_P(Cases, LoraPipelineGolden,
                         ::testing::Values("a_peft_64x64", "b_kohya_80x48_cfg", "c_comfy_48x64",
                                           "d_lycoris_64x48", "e_two_loras_64x64", "f_lightning_4steps_64x64",
                                           "g_lightning_8steps_96x64", "h_edit_plus_lightning"));

class LoraPipeline : public ::testing::Test {
 protected:
  static void TearDownTestSuite() { loaded_models().clear(); }
};

// The goldens move with the LoRA: without it, and at another strength, the latents are clearly elsewhere, so
// matching them shows the LoRA was applied, and at its strength.
TEST_F(LoraPipeline, TheGoldensDependOnTheLoraAndItsStrength) {
  const std::string name = "b_kohya_80x48_cfg";
  const WeightSource golden = test::open_golden(folder_of(name));
  const JobResult half = run_case(name, {}, 0.5f);
  EXPECT_GT(test::relative_error(half.latents, golden.get("latents")), 0.05);
  const nlohmann::json parameters = test::golden_json(folder_of(name));
  const JobResult without = text_to_image(model_for(parameters), test::golden_request(parameters), {});
  EXPECT_LE(test::relative_error(without.latents, golden.get("latents_without_lora")), kLatentTolerance);
  EXPECT_GT(test::relative_error(without.latents, golden.get("latents")), 0.1);
}

// A job with other LoRAs after one with LoRAs merged into the kept weights computes with the exact base
// weights again: the same arrangement cache gives the job without LoRAs the very latents of a fresh one.
TEST_F(LoraPipeline, AKeptArrangementGoesBackToTheExactBaseWeights) {
  const nlohmann::json parameters = test::golden_json(folder_of("a_peft_64x64"));
  const QwenImageModel& model = model_for(parameters);
  MemoryOptions options;
  options.plan.strategy = Strategy::Bf16Full;
  TextToImageRequest request = test::golden_request(parameters);
  const JobResult fresh = text_to_image(model, request, options);
  ArrangementCache cache;
  request.sampling.loras = golden_loras(parameters);
  const JobResult with_lora = text_to_image(model, request, options, {}, &cache);
  EXPECT_EQ(with_lora.lora_layers_merged, with_lora.lora_layers);
  request.sampling.loras.clear();
  const JobResult after = text_to_image(model, request, options, {}, &cache);
  EXPECT_TRUE(test::bit_identical(after.latents, fresh.latents));
  // Only the networks the LoRA changed were arranged again: the VAE stayed as it was.
  EXPECT_EQ(after.reused_components, std::vector<std::string>{"vae"});
}

// Streamed blocks cannot take a merge (the ring holds the checkpoint's bytes), so their LoRAs run beside the
// weights, while the weights placed whole (outside the blocks) take theirs merged: the same image.
TEST_F(LoraPipeline, StreamedBlocksComputeTheirLorasBesideTheWeights) {
  MemoryOptions options;
  options.plan.strategy = Strategy::SequentialOffload;
  const JobResult result = run_case("a_peft_64x64", options);
  const WeightSource golden = test::open_golden(folder_of("a_peft_64x64"));
  EXPECT_LE(test::relative_error(result.latents, golden.get("latents")), kLatentTolerance);
  EXPECT_GT(result.bytes_streamed, 0);
  EXPECT_GT(result.lora_layers_merged, 0);
  EXPECT_LT(result.lora_layers_merged, result.lora_layers);
}

// Quantized blocks keep their codes: their LoRAs run beside them, in full precision.
TEST_F(LoraPipeline, QuantizedBlocksComputeTheirLorasBesideTheCodes) {
  MemoryOptions options;
  options.plan.strategy = Strategy::Fp8;
  options.plan.quality = Quality::Fp8;
  const JobResult result = run_case("a_peft_64x64", options);
  const WeightSource golden = test::open_golden(folder_of("a_peft_64x64"));
  const double error = test::relative_error(result.latents, golden.get("latents"));
  const double lora_effect = test::relative_error(golden.get("latents_without_lora"), golden.get("latents"));
  std::printf("[   LoRA   ] fp8 blocks: latents %.3g from the f32 reference (the LoRA moves them %.3g)\n",
              error, lora_effect);
  EXPECT_EQ(result.plan.component(Component::Transformer).precision, WeightPrecision::Fp8);
  EXPECT_LT(error, 0.1 * lora_effect);
  EXPECT_LT(result.lora_layers_merged, result.lora_layers);
}

// The planner counts the LoRAs' tensors with the layers they change.
TEST_F(LoraPipeline, ThePlannerCountsTheLoraTensors) {
  const nlohmann::json parameters = test::golden_json(folder_of("a_peft_64x64"));
  const QwenImageModel& model = model_for(parameters);
  TextToImageRequest request = test::golden_request(parameters);
  const JobGeometry geometry = job_geometry(model.configs, request);
  const std::vector<AppliedLora> loras = job_loras(model, golden_loras(parameters));
  const std::vector<ComponentFacts> plain = job_facts(model, geometry, request.sampling.prompt, {});
  const std::vector<ComponentFacts> with_loras =
      job_facts(model, geometry, request.sampling.prompt, {}, {}, loras);
  QwenImageTransformer2DModel transformer = *model.transformer;
  attach_loras(loras, transformer);
  int64_t block_lora_bytes = 0;
  transformer.blocks()[0].visit_linears("", [&](const std::string&, nn::Linear& layer) {
    for (const Tensor* tensor : {&layer.lora_down, &layer.lora_up, &layer.lora_diff, &layer.lora_diff_bias})
      if (tensor->defined()) block_lora_bytes += tensor->nbytes();
  });
  ASSERT_GT(block_lora_bytes, 0);
  const auto transformer_facts = [](const std::vector<ComponentFacts>& facts) {
    for (const ComponentFacts& component : facts)
      if (component.component == Component::Transformer) return component;
    throw Error("no transformer facts");
  };
  const BlockFacts before = transformer_facts(plain).blocks[0];
  const BlockFacts after = transformer_facts(with_loras).blocks[0];
  const int lossless = static_cast<int>(WeightPrecision::Lossless);
  EXPECT_EQ(after.bytes[lossless] + after.once_bytes[lossless] - before.bytes[lossless] -
                before.once_bytes[lossless],
            block_lora_bytes);
}

// A LoRA on the text encoder (kohya's lora_te_ keys) changes the prompt's embedding, merged or beside the
// weights alike. No reference pipeline loads text-encoder LoRAs for Qwen-Image, so the two paths check
// each other.
TEST_F(LoraPipeline, TextEncoderLorasChangeThePromptMergedOrBeside) {
  const nlohmann::json parameters = test::golden_json(folder_of("a_peft_64x64"));
  const QwenImageModel& model = model_for(parameters);
  const int64_t hidden = model.text_encoder->config().hidden_size;
  const int64_t rank = 2;
  std::vector<float> down(static_cast<size_t>(rank * hidden)), up(static_cast<size_t>(hidden * rank));
  for (size_t i = 0; i < down.size(); ++i) down[i] = std::sin(0.7f * static_cast<float>(i));
  for (size_t i = 0; i < up.size(); ++i) up[i] = std::cos(0.3f * static_cast<float>(i));
  const std::filesystem::path file = test::scratch_dir("lora-text-encoder") / "te.safetensors";
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const char* module :
       {"lora_te_model_layers_0_self_attn_q_proj", "lora_te_model_layers_1_mlp_down_proj"}) {
    const bool mlp = std::string(module).find("mlp") != std::string::npos;
    const int64_t in = mlp ? model.text_encoder->config().intermediate_size : hidden;
    std::vector<float> wide_down(static_cast<size_t>(rank * in));
    for (size_t i = 0; i < wide_down.size(); ++i) wide_down[i] = down[i % down.size()];
    tensors.push_back(
        {std::string(module) + ".lora_down.weight", Tensor::from_floats(wide_down, {rank, in})});
    tensors.push_back({std::string(module) + ".lora_up.weight", Tensor::from_floats(up, {hidden, rank})});
    tensors.push_back({std::string(module) + ".alpha", Tensor::from_floats(std::vector<float>{1.0f}, {})});
  }
  write_safetensors(file, tensors);
  TextToImageRequest request = test::golden_request(parameters);
  const JobResult plain = text_to_image(model, request, {});
  request.sampling.loras = {{file, 1.0f}};
  MemoryOptions beside;
  beside.lora_apply = LoraApply::RunTime;
  const JobResult with_beside = text_to_image(model, request, beside);
  MemoryOptions merged;
  merged.plan.strategy = Strategy::Bf16Full;
  const JobResult with_merged = text_to_image(model, request, merged);
  EXPECT_EQ(with_beside.lora_layers, 2);
  EXPECT_EQ(with_merged.lora_layers_merged, 2);
  EXPECT_GT(test::relative_error(with_beside.latents, plain.latents), 1e-2);
  EXPECT_LE(test::relative_error(with_merged.latents, with_beside.latents), 1e-5);
}

TEST_F(LoraPipeline, ALoraForAnotherModelFailsNamingTheLayer) {
  // The edit model's transformer is wider than the text-to-image one's.
  const nlohmann::json parameters = test::golden_json(folder_of("a_peft_64x64"));
  TextToImageRequest request = test::golden_request(parameters);
  request.sampling.loras = {
      {test::source_path("tests/golden/lora/loras/edit_lightx2v_bf16.safetensors"), 1.0f}};
  test::expect_contains(test::error_of([&] { text_to_image(model_for(parameters), request, {}); }),
                        "the LoRA was made for another model");
}

TEST(LoraChoice, ParsesFileAndStrength) {
  EXPECT_EQ(LoraChoice::parse("a.safetensors").path, "a.safetensors");
  EXPECT_EQ(LoraChoice::parse("a.safetensors").strength, 1.0f);
  const LoraChoice choice = LoraChoice::parse("dir:x/b.safetensors:0.75");
  EXPECT_EQ(choice.path, "dir:x/b.safetensors");
  EXPECT_EQ(choice.strength, 0.75f);
  EXPECT_EQ(LoraChoice::parse("c.safetensors:-1.5").strength, -1.5f);
  EXPECT_EQ(LoraChoice::parse("d:e").path, "d:e");
  test::expect_contains(test::error_of([] { LoraChoice::parse(":0.5"); }), "no file before the strength");
  test::expect_contains(test::error_of([] { LoraChoice::parse("f.safetensors:inf"); }), "finite");
}

}  // namespace
}  // namespace canvas
