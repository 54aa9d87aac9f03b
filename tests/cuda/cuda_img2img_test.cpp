// Whole img2img, inpainting and edit-inpainting jobs on the GPU against the reference goldens
// (tests/golden/inpaint/, which the CPU f32 path matches to ~1e-6): the prompt embeddings, the source's VAE
// encoding and noise and the VAE's decoding in f32 within 1e-4 and in bf16 within 1e-2, then the whole job's
// final latents and image.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"
#include "pipeline/img2img.h"
#include "pipeline/qwen_image_phases.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

struct Precision {
  DType dtype;
  double tolerance;
};

// The image the reference handed out: with padding_mask_crop the 8-bit picture the inpainted region was
// pasted into, as v / 255; else its decoded image.
Tensor reference_image(const WeightSource& golden) {
  if (!golden.contains("image_overlaid")) return golden.get("image");
  const RgbImage picture = test::golden_picture(golden, "image_overlaid");
  std::vector<float> values(picture.pixels.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(picture.pixels[i]) / 255.0f;
  return Tensor::from_floats(values, {picture.height, picture.width, 3});
}

// Edit-inpainting's picture through the vision tower of the CPU f32 path, which matches the reference's
// within ~1e-6: the golden keeps no image embeddings, and the GPU tower's own rounding would be counted
// twice in the prompt's (CudaEdit holds that tower to the reference's embeddings on its own).
Qwen2_5_VLImageEmbeds cpu_picture_embeddings(const std::string& model_path,
                                             const ImageToImageRequest& request) {
  const QwenImageModel model = load_qwen_image(test::source_path(model_path), Device::cpu());
  const JobGeometry geometry = job_geometry(model.configs, request);
  const ProcessedPictures processed = process_pictures(request, geometry);
  Job job(model, geometry, request.sampling.prompt, {}, {}, {});
  Qwen2_5_VLImageEmbeds pictures;
  job.run({
      {JobPhase::Plan, [&] { job.arrange_weights(); }},
      {JobPhase::VisionEncode, [&] { pictures = encode_pictures(job, {processed.picture}); }},
  });
  return pictures;
}

class CudaImg2Img : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
  void expect_close(const Tensor& ours, const Tensor& reference, const std::string& what,
                    double tolerance) const {
    const double error = test::relative_error(ours.to(Device::cpu()).to(DType::F32), reference);
    EXPECT_LE(error, tolerance) << what;
    std::printf("[ gpu parity ] %-5s %-50s relative error %.3g\n",
                std::string(dtype_name(GetParam().dtype)).c_str(), what.c_str(), error);
  }
};

TEST_P(CudaImg2Img, EveryPhaseAndTheLatentsMatchDiffusers) {
  const DType dtype = GetParam().dtype;
  const double tolerance = GetParam().tolerance;
  for (const char* name : {"a_img2img", "b_img2img_cfg", "c_inpaint", "d_inpaint_blur_cfg", "e_inpaint_crop",
                           "f_edit_inpaint_cfg"}) {
    const std::string folder = std::string("inpaint/") + name;
    const std::string model_path = test::golden_json(folder).at("model").get<std::string>();
    const WeightSource golden = test::open_golden(folder);
    const QwenImageModel model = load_qwen_image(test::source_path(model_path), kGpu, dtype);
    const ImageToImageRequest request = test::golden_image_to_image_request(name);
    const JobGeometry geometry = job_geometry(model.configs, request);
    const ProcessedPictures processed = process_pictures(request, geometry);
    const bool edits = !geometry.references.empty();
    // An edit model's prompts are encoded with the 3D text positions (the request's default): the
    // reference's *_mrope tensors.
    const std::string positions = edits ? "_mrope" : "";
    Qwen2_5_VLImageEmbeds pictures;
    if (edits) {
      pictures = cpu_picture_embeddings(model_path, request);
      pictures.embeds = pictures.embeds.to(dtype).to(kGpu);
    }

    Job job(model, geometry, request.sampling.prompt, {}, {}, {});
    PromptEmbeddings prompts;
    SourceLatents source;
    Tensor decoded;
    job.run({
        {JobPhase::Plan, [&] { job.arrange_weights(); }},
        {JobPhase::TextEncode,
         [&] { prompts = encode_prompts(job, request.sampling.prompt, edits ? &pictures : nullptr); }},
        {JobPhase::VaeEncode,
         [&] { source = encode_source_latents(job, processed.picture_tensor, request.sampling.seed); }},
        // The decoder on its own: from the reference's final latents, in f32 as on every device.
        {JobPhase::VaeDecode, [&] { decoded = decode_latents(job, golden.get("latents").to(kGpu)); }},
    });
    expect_close(prompts.positive.embeds, golden.get("prompt_embeds" + positions), folder + " prompt_embeds",
                 tolerance);
    if (geometry.guided) {
      expect_close(prompts.negative.embeds, golden.get("negative_prompt_embeds" + positions),
                   folder + " negative_prompt_embeds", tolerance);
    }
    expect_close(source.image_latents, golden.get("image_latents"), folder + " image_latents", tolerance);
    // Drawn on the host as the reference draws it; only the cast to the activation dtype rounds.
    expect_close(source.noise, golden.get("noise"), folder + " noise", tolerance);
    expect_close(decoded, golden.get("image"), folder + " decoded image", tolerance);

    // bf16 rounds every activation of every step; the tiny model's random weights amplify that, so the
    // bound on the final latents is a few times the single-forward tolerance, and the bf16 image is only
    // reported.
    const JobResult result = image_to_image(model, request, {});
    expect_close(result.latents, golden.get("latents" + positions), folder + " latents", 5 * tolerance);
    // On an edit model the reference's image comes from its sequential text positions, as do its latents.
    JobResult compared = result;
    if (edits) {
      ImageToImageRequest sequential = request;
      sequential.text_positions = TextPositions::Sequential;
      compared = image_to_image(model, sequential, {});
      expect_close(compared.latents, golden.get("latents"), folder + " sequential latents", 5 * tolerance);
    }
    const double largest = test::max_abs_difference(compared.image, reference_image(golden));
    std::printf("[ gpu parity ] %-5s %-50s image max |d| %.3g/255\n", std::string(dtype_name(dtype)).c_str(),
                folder.c_str(), largest * 255.0);
    if (dtype == DType::F32) {
      EXPECT_LE(largest, 2.0 / 255.0) << folder;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaImg2Img,
                         ::testing::Values(Precision{DType::F32, 1e-4}, Precision{DType::BF16, 1e-2}),
                         [](const auto& param_info) {
                           return std::string(dtype_name(param_info.param.dtype));
                         });

}  // namespace
}  // namespace canvas
