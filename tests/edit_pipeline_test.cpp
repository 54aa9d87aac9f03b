// Whole edit jobs on the tiny Qwen-Image-Edit models against diffusers' QwenImageEditPlusPipeline and
// QwenImageEditPipeline (tests/golden/edit/, tools/reference/make_edit_goldens.py): each phase's output, the
// final latents and the image.
//
// The goldens hold two references. diffusers 0.42.1 passes the text encoder no mm_token_type_ids, and
// transformers 5 then numbers the prompt's tokens 0, 1, 2, ... on all three rotary axes (diffusers issue
// #14194): `prompt_embeds`, `latents` and `image` are that pipeline's. The `*_mrope` tensors are the same
// pipeline with Qwen2.5-VL's 3D positions, as transformers 4 computed them and the models were trained.
// Canvas computes the 3D positions by default and the pinned pipeline's with TextPositions::Sequential.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

#include "image/resample.h"
#include "io/safetensors.h"
#include "pipeline/image_edit.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "pipeline/qwen_image_phases.h"
#include "test_util.h"

namespace canvas {
namespace {

std::string folder_of(const std::string& name) {
  return "edit/" + name;
}

// The models the cases load, by path. Emptied when each suite ends: models must go before the process's
// allocators and backends do.
std::map<std::string, std::unique_ptr<QwenImageModel>>& loaded_models() {
  static std::map<std::string, std::unique_ptr<QwenImageModel>> models;
  return models;
}

const QwenImageModel& model_for(const std::string& name) {
  const std::string path = test::golden_json(folder_of(name)).at("model").get<std::string>();
  std::unique_ptr<QwenImageModel>& model = loaded_models()[path];
  if (!model)
    model = std::make_unique<QwenImageModel>(load_qwen_image(test::source_path(path), Device::cpu()));
  return *model;
}

// Largest and mean |difference| of two [H, W, 3] images in [0, 1], in 1/255 steps.
std::pair<double, double> image_difference(const Tensor& ours, const Tensor& reference) {
  const std::vector<float> a = ours.to_floats(), b = reference.to_floats();
  double largest = 0, sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double difference = std::fabs(static_cast<double>(a[i]) - b[i]) * 255.0;
    largest = std::max(largest, difference);
    sum += difference;
  }
  return {largest, sum / static_cast<double>(a.size())};
}

class EditPipelineGolden : public ::testing::TestWithParam<std::string> {
 protected:
  static void TearDownTestSuite() { loaded_models().clear(); }
};

class EditPipeline : public ::testing::Test {
 protected:
  static void TearDownTestSuite() { loaded_models().clear(); }
};

// Each phase on its own, from the reference's inputs to it where they differ from ours only by rounding.
TEST_P(EditPipelineGolden, EveryPhaseMatchesDiffusers) {
  const std::string name = GetParam();
  const WeightSource golden = test::open_golden(folder_of(name));
  const QwenImageModel& model = model_for(name);
  const ImageEditRequest request = test::golden_edit_request(name);
  const JobGeometry geometry = job_geometry(model.configs, request);
  ASSERT_EQ(geometry.references.size(), request.images.size());

  // Sizes, and the Lanczos resizes, bit for bit.
  const nlohmann::json parameters = test::golden_json(folder_of(name));
  EXPECT_EQ(geometry.width, parameters.at("output_width").get<int64_t>());
  EXPECT_EQ(geometry.height, parameters.at("output_height").get<int64_t>());
  std::vector<RgbImage> condition_images;
  for (size_t i = 0; i < request.images.size(); ++i) {
    const ReferencePicture& picture = geometry.references[i];
    EXPECT_EQ(picture.vae.width, parameters.at("vae_sizes")[i][0].get<int64_t>());
    EXPECT_EQ(picture.vae.height, parameters.at("vae_sizes")[i][1].get<int64_t>());
    condition_images.push_back(resize(request.images[i], picture.condition.width, picture.condition.height,
                                      ResampleFilter::Lanczos));
    const Tensor expected = golden.get("condition_image_" + std::to_string(i));
    ASSERT_EQ(expected.numel(), static_cast<int64_t>(condition_images.back().pixels.size()));
    std::vector<uint8_t> expected_bytes(static_cast<size_t>(expected.numel()));
    std::memcpy(expected_bytes.data(), expected.raw_data(), expected_bytes.size());
    EXPECT_EQ(condition_images.back().pixels, expected_bytes) << "condition image " << i;
  }
  const Qwen2VLImageFeatures features = preprocess_images(condition_images, *model.configs.image_processor);
  test::expect_close(features.pixel_values, golden.get("pixel_values"), 1e-6);

  for (TextPositions positions : {TextPositions::MRope, TextPositions::Sequential}) {
    ImageEditRequest with_positions = request;
    with_positions.text_positions = positions;
    Job job(model, job_geometry(model.configs, with_positions), request.sampling.prompt, {}, {}, {});
    Qwen2_5_VLImageEmbeds pictures;
    PromptEmbeddings prompts;
    Tensor references;
    job.run({
        {JobPhase::Plan, [&] { job.arrange_weights(); }},
        {JobPhase::VisionEncode, [&] { pictures = encode_pictures(job, request.images); }},
        {JobPhase::TextEncode, [&] { prompts = encode_prompts(job, request.sampling.prompt, &pictures); }},
        {JobPhase::VaeEncode, [&] { references = encode_reference_latents(job, request.images); }},
    });
    test::expect_close(pictures.embeds, golden.get("image_embeds"), 1e-5);
    const std::string suffix = positions == TextPositions::MRope ? "_mrope" : "";
    test::expect_close(prompts.positive.embeds, golden.get("prompt_embeds" + suffix), 1e-4);
    if (geometry.guided)
      test::expect_close(prompts.negative.embeds, golden.get("negative_prompt_embeds" + suffix), 1e-4);
    test::expect_close(references, golden.get("image_latents"), 1e-4);
  }
}

TEST_P(EditPipelineGolden, LatentsAndImageMatchDiffusers) {
  const std::string name = GetParam();
  const WeightSource golden = test::open_golden(folder_of(name));
  const QwenImageModel& model = model_for(name);
  ImageEditRequest request = test::golden_edit_request(name);
  const bool guided = test::golden_json(folder_of(name)).at("do_true_cfg").get<bool>();

  const JobResult mrope = image_edit(model, request, {});
  EXPECT_EQ(mrope.used_cfg, guided);
  const double mrope_error = test::relative_error(mrope.latents, golden.get("latents_mrope"));
  EXPECT_LE(mrope_error, 1e-4);

  request.text_positions = TextPositions::Sequential;
  const JobResult sequential = image_edit(model, request, {});
  const double sequential_error = test::relative_error(sequential.latents, golden.get("latents"));
  EXPECT_LE(sequential_error, 1e-4);
  const Tensor expected = golden.get("image");
  ASSERT_EQ(sequential.image.shape(), expected.shape());
  const auto [largest, mean] = image_difference(sequential.image, expected);
  EXPECT_LE(largest, 2.0);
  EXPECT_LE(mean, 0.2);
  std::printf("[ parity ] %s latents rel %.3g (3D positions) %.3g (sequential), image max |d| %.3g/255\n",
              name.c_str(), mrope_error, sequential_error, largest);
}

INSTANTIATE_TEST_SUITE_P(Cases, EditPipelineGolden,
                         ::testing::Values("a_plus_1picture", "b_plus_3pictures_cfg",
                                           "c_plus_2509_2pictures_cfg", "d_edit_legacy_cfg"));

// The inputs move the output: a test that passed with any picture would prove nothing.
TEST_F(EditPipeline, AnotherPictureOrPromptChangesTheEdit) {
  const QwenImageModel& model = model_for("a_plus_1picture");
  ImageEditRequest request = test::golden_edit_request("a_plus_1picture");
  const Tensor first = image_edit(model, request, {}).latents;
  ImageEditRequest other_picture = request;
  for (uint8_t& value : other_picture.images[0].pixels) value = static_cast<uint8_t>(255 - value);
  EXPECT_GT(test::relative_error(image_edit(model, other_picture, {}).latents, first), 0.05);
  ImageEditRequest other_prompt = request;
  other_prompt.sampling.prompt = "Make the sea green and add a small blue house.";
  EXPECT_GT(test::relative_error(image_edit(model, other_prompt, {}).latents, first), 0.05);
}

// ComfyUI's Qwen-Image-Edit-2511 files mark zero_cond_t with an empty `__index_timestep_zero__` tensor rather
// than a config key: a transformer whose config says false but whose weights hold the marker edits as 2511.
TEST_F(EditPipeline, ComfyUisIndexTimestepZeroMarkerTurnsOnZeroCondT) {
  namespace fs = std::filesystem;
  const fs::path source = test::source_path("models/tiny-qwen-image-edit");
  const fs::path folder = test::scratch_dir("edit_marker") / "model";
  fs::create_directories(folder / "transformer");
  for (const char* part : {"model_index.json", "processor", "scheduler", "text_encoder", "tokenizer", "vae"})
    fs::create_symlink(fs::canonical(source / part), folder / part);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(source / "transformer" / "config.json"));
  ASSERT_TRUE(config.at("zero_cond_t").get<bool>());
  config["zero_cond_t"] = false;
  std::ofstream(folder / "transformer" / "config.json") << config.dump();
  const WeightSource weights =
      WeightSource::open(source / "transformer" / "diffusion_pytorch_model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : weights.names()) tensors.emplace_back(name, weights.get(name));
  write_safetensors(folder / "transformer" / "diffusion_pytorch_model.safetensors", tensors);
  EXPECT_FALSE(read_qwen_image_configs(folder).transformer.zero_cond_t);

  tensors.emplace_back("__index_timestep_zero__", Tensor::from_floats(std::vector<float>{}, {0}));
  write_safetensors(folder / "transformer" / "diffusion_pytorch_model.safetensors", tensors);
  const QwenImageModel model = load_qwen_image(folder, Device::cpu());
  EXPECT_TRUE(model.configs.transformer.zero_cond_t);
  const JobResult result = image_edit(model, test::golden_edit_request("a_plus_1picture"), {});
  EXPECT_LE(
      test::relative_error(result.latents, test::open_golden("edit/a_plus_1picture").get("latents_mrope")),
      1e-4);
}

}  // namespace
}  // namespace canvas
