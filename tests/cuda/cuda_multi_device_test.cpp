// Several devices on the GPU. Sequence parallelism's split arithmetic runs on one GPU with two or four ranks
// sharing it (exchanging by copies); with two GPUs, whole jobs are spread over them through NCCL and must
// match the one-GPU job: bit for bit when blocks, components or guidance halves are split, within the bf16
// tolerance when tokens are.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"
#include "models/nn.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

class CudaMultiDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
};

TEST_F(CudaMultiDevice, SequenceParallelRanksSharingOneGpuMatchTheReference) {
  const std::string folder = "transformer/t2_nonsquare_odd";
  WeightSource golden = test::open_golden(folder);
  const std::vector<ImageShape> shapes = {{1, 3, 5}};
  for (DType dtype : {DType::F32, DType::BF16}) {
    QwenImageTransformer2DModel model(
        QwenImageTransformerConfig::from_file(test::source_path("tests/golden/" + folder) / "config.json"),
        test::open_golden_model(folder));
    nn::place_weights(model, "transformer", kGpu, dtype);
    const Tensor hidden = golden.get("hidden_states").to(dtype).to(kGpu);
    const Tensor text = golden.get("encoder_hidden_states").to(dtype).to(kGpu);
    const Tensor mask = golden.get("encoder_hidden_states_mask").to(DType::F32).to(kGpu);
    const Tensor single = model.forward(hidden, text, mask, golden.get("timestep"), shapes);
    const double tolerance = dtype == DType::F32 ? 1e-4 : 1e-2;
    for (int ranks : {2, 4}) {
      const Tensor split =
          test::sequence_parallel_forward(model, std::vector<Device>(static_cast<size_t>(ranks), kGpu),
                                          hidden, text, mask, golden.get("timestep").to_floats()[0], shapes);
      const double to_reference =
          test::relative_error(split.to(Device::cpu()).to(DType::F32), golden.get("sample"));
      const double to_single = test::relative_error(split.to(Device::cpu()).to(DType::F32),
                                                    single.to(Device::cpu()).to(DType::F32));
      std::printf(
          "[ gpu parity ] %-5s sequence parallel, %d ranks on one GPU: %.3g from the reference, %.3g "
          "from one rank\n",
          std::string(dtype_name(dtype)).c_str(), ranks, to_reference, to_single);
      EXPECT_LE(to_reference, tolerance);
      EXPECT_LE(to_single, tolerance);
    }
  }
}

TEST_F(CudaMultiDevice, JobsSpreadOverTwoGpusMatchTheOneGpuJob) {
  const int devices = register_cuda_backends();
  if (devices < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << devices;
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), kGpu);
  MemoryOptions options;
  TextToImageRequest request = test::golden_request(test::golden_json("pipeline/c_96x64_cfg4_neg_seed123"));
  const JobResult one = text_to_image(model, request, options);
  options.extra_devices = {Device::cuda(1)};
  for (Parallelism parallelism :
       {Parallelism::Components, Parallelism::Pipeline, Parallelism::Guidance, Parallelism::Sequence}) {
    SCOPED_TRACE(std::string(parallelism_name(parallelism)));
    options.plan.parallelism = parallelism;
    allocator_for(Device::cuda(1)).reset_peak();
    const JobResult spread = text_to_image(model, request, options);
    for (const std::string& line : spread.plan.describe()) std::printf("  %s\n", line.c_str());
    EXPECT_GT(allocator_for(Device::cuda(1)).peak(), 0);
    if (parallelism == Parallelism::Sequence) {
      const double error = test::relative_error(spread.image, one.image);
      std::printf("[ gpu parity ] sequence parallel over 2 GPUs: image %.3g from one GPU\n", error);
      EXPECT_LE(error, 1e-2);
    } else {
      EXPECT_TRUE(test::bit_identical(spread.latents, one.latents));
      EXPECT_TRUE(test::bit_identical(spread.image, one.image));
    }
  }
}

}  // namespace
}  // namespace canvas
