// Memory plans on the GPU: weights streamed through the upload queue (pinned or staged from the mapped
// checkpoint) must give exactly what the resident plan gives, and stay within bf16 tolerance of the
// reference.
#include <gtest/gtest.h>

#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "pipeline/recovery_ladder.h"
#include "pipeline/text_to_image.h"
#include "test_util.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

class CudaMemoryPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(CudaMemoryPlan, UploadQueueCopiesPageableAndPinnedSources) {
  std::unique_ptr<UploadQueue> queue = backend_for(kGpu).create_upload_queue(int64_t{4} << 20);
  // Larger than the staging halves, so the staged path takes several chunks.
  std::vector<float> values(3'000'001);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 9973) * 0.5f;
  Tensor pageable = Tensor::from_floats(values, {static_cast<int64_t>(values.size())});
  Tensor pinned =
      Tensor::from_buffer(pinned_host_allocator().allocate(pageable.nbytes()), pageable.shape(), DType::F32);
  std::memcpy(pinned.raw_data(), pageable.raw_data(), static_cast<size_t>(pageable.nbytes()));
  Tensor first = Tensor::empty(pageable.shape(), DType::F32, kGpu);
  Tensor second = Tensor::empty(pageable.shape(), DType::F32, kGpu);
  Fence done = queue->upload({{pageable, first}, {pinned, second}}, nullptr, /*times=*/nullptr);
  queue->compute_wait(done);
  EXPECT_EQ(first.to_floats(), values);
  EXPECT_EQ(second.to_floats(), values);
}

TEST_F(CudaMemoryPlan, StreamedPlansMatchTheResidentPlanExactly) {
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), kGpu);
  MemoryOptions options;
  const std::string folder = "pipeline/c_96x64_cfg4_neg_seed123";
  TextToImageRequest request = test::golden_request(test::golden_json(folder));
  options.plan.strategy = Strategy::Bf16Full;
  JobResult resident = text_to_image(model, request, options);
  double error = test::relative_error(resident.latents.to(Device::cpu()).to(DType::F32),
                                      test::open_golden(folder).get("latents"));
  EXPECT_LE(error, 5e-2);
  for (Strategy strategy : {Strategy::ModelOffload, Strategy::SequentialOffload}) {
    options.plan.strategy = strategy;
    JobResult streamed = text_to_image(model, request, options);
    SCOPED_TRACE(std::string(strategy_name(strategy)));
    EXPECT_TRUE(test::bit_identical(streamed.latents, resident.latents));
    EXPECT_TRUE(test::bit_identical(streamed.image, resident.image));
    if (strategy == Strategy::SequentialOffload) {
      EXPECT_GT(streamed.bytes_streamed, 0);
    }
  }
}

TEST_F(CudaMemoryPlan, VaeWithNoRoomOnTheDeviceDecodesOnTheCpu) {
  const QwenImageModel model = load_qwen_image(test::source_path("models/tiny-qwen-image"), kGpu);
  MemoryOptions options;
  TextToImageRequest request = test::golden_request(test::golden_json("pipeline/c_96x64_cfg4_neg_seed123"));
  options.plan.strategy = Strategy::ModelOffload;
  options.device_budget_bytes = int64_t{1} << 30;
  RecoveryMemory::forget(recovery_key(model, request, options));
  const JobResult clean = text_to_image(model, request, options);
  // After the last step the device has no room left: neither the whole decode nor its tiles fit.
  JobObservers observers;
  observers.on_step = [](int done, int total) {
    if (done == total) allocator_for(kGpu).set_budget(0);
  };
  JobResult result = text_to_image(model, request, options, observers);
  RecoveryMemory::forget(recovery_key(model, request, options));
  ASSERT_FALSE(result.recoveries.empty());
  EXPECT_NE(result.recoveries.back().find("vae: runs on the CPU"), std::string::npos)
      << result.recoveries.back();
  EXPECT_EQ(result.plan.component(Component::Vae).residency, Residency::Mapped);
  EXPECT_TRUE(test::bit_identical(result.latents, clean.latents));
  // The same f32 decode, on the other device.
  const double error = test::relative_error(result.image, clean.image);
  std::printf("[ recovery ] VAE on the CPU against the GPU's: image rel error %.3g\n", error);
  EXPECT_LE(error, 1e-3);
}

}  // namespace
}  // namespace canvas
