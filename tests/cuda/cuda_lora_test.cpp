// Whole jobs with LoRAs on the GPU against the diffusers goldens (tests/golden/lora/, which the CPU f32 path
// matches to ~1e-6): the LoRAs computed beside the weights and merged into the placed weights, in f32 within
// 1e-4 and in bf16 within 5e-2 on the final latents (bf16 rounds every activation of every step).
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"
#include "pipeline/image_edit.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

struct Precision {
  DType dtype;
  double tolerance;
};

class CudaLora : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(CudaLora, BesideAndMergedMatchDiffusers) {
  for (const char* name :
       {"b_kohya_80x48_cfg", "d_lycoris_64x48", "e_two_loras_64x64", "g_lightning_8steps_96x64"}) {
    const std::string folder = std::string("lora/") + name;
    const nlohmann::json parameters = test::golden_json(folder);
    const WeightSource golden = test::open_golden(folder);
    const QwenImageModel model =
        load_qwen_image(test::source_path(parameters.at("model").get<std::string>()), kGpu, GetParam().dtype);
    TextToImageRequest request = test::golden_request(parameters);
    for (const nlohmann::json& lora : parameters.at("loras")) {
      request.sampling.loras.push_back(
          {test::source_path("tests/golden/lora/" + lora.at("file").get<std::string>()),
           lora.at("adapter_weight").get<float>()});
    }
    if (parameters.at("scheduler").get<std::string>() == "lightning") request.sampling.scheduler_shift = 3.0;
    for (const LoraApply apply : {LoraApply::RunTime, LoraApply::Auto}) {
      MemoryOptions options;
      options.lora_apply = apply;
      options.plan.strategy = Strategy::Bf16Full;
      const JobResult result = text_to_image(model, request, options);
      const double error =
          test::relative_error(result.latents.to(Device::cpu()).to(DType::F32), golden.get("latents"));
      std::printf("[ gpu parity ] %-5s %-26s %-8s latents relative error %.3g (%d of %d layers merged)\n",
                  std::string(dtype_name(GetParam().dtype)).c_str(), name,
                  std::string(lora_apply_name(apply)).c_str(), error, result.lora_layers_merged,
                  result.lora_layers);
      EXPECT_LE(error, GetParam().tolerance) << name << " " << lora_apply_name(apply);
      EXPECT_EQ(result.lora_layers_merged, apply == LoraApply::Auto ? result.lora_layers : 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaLora,
                         ::testing::Values(Precision{DType::F32, 1e-4}, Precision{DType::BF16, 5e-2}),
                         [](const auto& param_info) {
                           return std::string(dtype_name(param_info.param.dtype));
                         });

}  // namespace
}  // namespace canvas
