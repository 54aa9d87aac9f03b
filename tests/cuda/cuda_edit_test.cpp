// Whole edits on the GPU against the reference goldens (tests/golden/edit/, which the CPU f32 path matches
// to ~1e-5): every phase's output in f32 within 1e-4 and in bf16 within 1e-2, and the final latents.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"
#include "pipeline/image_edit.h"
#include "pipeline/qwen_image_phases.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

struct Precision {
  DType dtype;
  double tolerance;
};

class CudaEdit : public ::testing::TestWithParam<Precision> {
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

TEST_P(CudaEdit, EveryPhaseAndTheLatentsMatchDiffusers) {
  const double tolerance = GetParam().tolerance;
  for (const char* name : {"a_plus_1picture", "b_plus_3pictures_cfg", "d_edit_legacy_cfg"}) {
    const std::string folder = std::string("edit/") + name;
    const nlohmann::json parameters = test::golden_json(folder);
    const WeightSource golden = test::open_golden(folder);
    const QwenImageModel model =
        load_qwen_image(test::source_path(parameters.at("model").get<std::string>()), kGpu, GetParam().dtype);
    const ImageEditRequest request = test::golden_edit_request(name);
    Job job(model, job_geometry(model.configs, request), request.sampling.prompt, {}, {}, {});
    Qwen2_5_VLImageEmbeds pictures;
    PromptEmbeddings prompts;
    Tensor references;
    job.run({
        {JobPhase::Plan, [&] { job.arrange_weights(); }},
        {JobPhase::VisionEncode, [&] { pictures = encode_pictures(job, request.images); }},
        {JobPhase::TextEncode, [&] { prompts = encode_prompts(job, request.sampling.prompt, &pictures); }},
        {JobPhase::VaeEncode, [&] { references = encode_reference_latents(job, request.images); }},
    });
    expect_close(pictures.embeds, golden.get("image_embeds"), folder + " image_embeds", tolerance);
    // The text encoder on its own: from the reference's image embeddings, so the vision tower's rounding is
    // not counted twice.
    Job text_job(model, job_geometry(model.configs, request), request.sampling.prompt, {}, {}, {});
    const Qwen2_5_VLImageEmbeds reference_pictures{golden.get("image_embeds").to(GetParam().dtype).to(kGpu),
                                                   pictures.grid_thw};
    text_job.run({
        {JobPhase::Plan, [&] { text_job.arrange_weights(); }},
        {JobPhase::TextEncode,
         [&] { prompts = encode_prompts(text_job, request.sampling.prompt, &reference_pictures); }},
    });
    expect_close(prompts.positive.embeds, golden.get("prompt_embeds_mrope"), folder + " prompt_embeds",
                 tolerance);
    expect_close(references, golden.get("image_latents"), folder + " image_latents", tolerance);
    // bf16 rounds every activation of every step; the tiny model's random weights amplify that, so the
    // bound on the final latents is a few times the single-forward tolerance.
    const JobResult result = image_edit(model, request, {});
    expect_close(result.latents, golden.get("latents_mrope"), folder + " latents", 5 * tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaEdit,
                         ::testing::Values(Precision{DType::F32, 1e-4}, Precision{DType::BF16, 1e-2}),
                         [](const auto& param_info) {
                           return std::string(dtype_name(param_info.param.dtype));
                         });

}  // namespace
}  // namespace canvas
