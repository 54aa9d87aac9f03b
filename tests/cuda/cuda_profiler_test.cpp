// Profiling on the GPU: CUDA event timestamps read on the host's clock, and streamed blocks recorded as
// copy intervals on the copy stream and compute intervals on the compute stream, which overlap.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>

#include "backend/cuda/cuda_backend.h"
#include "profile/profiler.h"
#include "pipeline/model_placement.h"
#include "test_util.h"

namespace canvas {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

const Device kGpu = Device::cuda(0);
// What reading two timestamps against different reference events may be off by.
constexpr auto kSlack = std::chrono::microseconds(100);
constexpr double kSlackSeconds = 100e-6;

class CudaProfiler : public ::testing::Test {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// GEMMs that keep the GPU busy for about a millisecond each.
void busy_work(const Tensor& x, const Tensor& weight, int gemms) {
  for (int i = 0; i < gemms; ++i) ops::linear(x, weight);
}

TEST_F(CudaProfiler, TimestampsReadTheDeviceOnTheHostClock) {
  Backend& backend = backend_for(kGpu);
  const Tensor x = Tensor::zeros({4096, 4096}, DType::BF16, kGpu);
  busy_work(x, x, 1);  // the GEMM's plan is chosen on the host once, here
  backend.synchronize();
  const SteadyClock::time_point before = SteadyClock::now();
  const Timestamp start = backend.compute_timestamp();
  busy_work(x, x, 20);
  const Timestamp end = backend.compute_timestamp();
  const SteadyClock::time_point queued = SteadyClock::now();
  backend.synchronize();
  const SteadyClock::time_point after = SteadyClock::now();

  const std::optional<SteadyClock::time_point> start_time = start->time(), end_time = end->time();
  ASSERT_TRUE(start_time && end_time);
  EXPECT_GE(*start_time, before - kSlack);
  EXPECT_LE(*end_time, after + kSlack);
  // The device finished the work after the host had queued it: a host clock reading at the second
  // timestamp would have said `queued`.
  EXPECT_GT(*end_time, queued);
}

TEST_F(CudaProfiler, UploadTimesSpanTheCopiesOnTheDevice) {
  Backend& backend = backend_for(kGpu);
  std::unique_ptr<UploadQueue> queue = backend.create_upload_queue(int64_t{16} << 20);
  const int64_t elements = int64_t{32} << 20;
  const Tensor pageable = Tensor::zeros({elements}, DType::F32);
  const Tensor pinned =
      Tensor::from_buffer(pinned_host_allocator().allocate(pageable.nbytes()), pageable.shape(), DType::F32);
  std::memset(pinned.raw_data(), 0, static_cast<size_t>(pinned.nbytes()));
  Tensor first = Tensor::empty(pageable.shape(), DType::F32, kGpu);
  Tensor second = Tensor::empty(pageable.shape(), DType::F32, kGpu);
  backend.synchronize();
  const SteadyClock::time_point before = SteadyClock::now();
  UploadTimes times;
  queue->compute_wait(queue->upload({{pageable, first}, {pinned, second}}, nullptr, &times));
  backend.synchronize();
  const SteadyClock::time_point after = SteadyClock::now();

  ASSERT_TRUE(times.start && times.end);
  const std::optional<SteadyClock::time_point> start = times.start->time(), end = times.end->time();
  ASSERT_TRUE(start && end);
  EXPECT_GE(*start, before - kSlack);
  EXPECT_LE(*end, after + kSlack);
  // No link moves these 256 MiB faster than 1 TB/s.
  EXPECT_GT(std::chrono::duration<double>(*end - *start).count(), 2.0 * pageable.nbytes() / 1e12);
}

TEST_F(CudaProfiler, StreamedCopiesOverlapTheComputeOfOtherBlocks) {
  constexpr int kBlocks = 6, kResident = 2, kPasses = 2;
  constexpr int64_t kDim = 4096;
  test::TestComponent component(kBlocks, kDim, DType::BF16);
  ComponentPlacement placement(kGpu, component.weights(), component.plan(kResident, 2));
  Profiler profiler({kGpu});
  placement.set_profiler(&profiler);
  const Tensor x = Tensor::zeros({4096, kDim}, DType::BF16, kGpu);
  {
    Profiler::Span phase = profiler.span("denoise");
    component.run_phase(placement, kPasses,
                        [&](int block) { busy_work(x, component.block_weight(block), 2); });
    // end_phase ended the streams, which waits for the device: every interval can be read now.
  }
  const json profile = profiler.to_json();
  std::vector<json> compute, copies;
  for (const json& interval : profile["intervals"]) {
    (interval["lane"] == "compute" ? compute : copies).push_back(interval);
  }
  ASSERT_EQ(compute.size(), static_cast<size_t>(kBlocks + kPasses * kBlocks));
  for (size_t i = 0; i < compute.size(); ++i) {
    EXPECT_EQ(compute[i]["name"], "transformer block " + std::to_string(i % kBlocks)) << i;
  }
  const int64_t once_bytes = kBlocks * kDim * 2, pass_bytes = kDim * kDim * 2;
  ASSERT_EQ(copies.size(),
            static_cast<size_t>(kBlocks + (placement.bytes_streamed() - once_bytes) / pass_bytes));

  // Each stream runs its work in order, within the phase.
  const json& phase = profile["phases"][0];
  ASSERT_EQ(phase["name"], "denoise");
  for (const std::vector<json>* lane : {&compute, &copies}) {
    double previous_end = phase["start"];
    for (const json& interval : *lane) {
      EXPECT_GE(interval["start"].get<double>(), previous_end - kSlackSeconds);
      EXPECT_LE(interval["start"].get<double>(), interval["end"].get<double>());
      previous_end = interval["end"];
    }
    EXPECT_LE(previous_end, phase["end"].get<double>() + kSlackSeconds);
  }
  // A streamed block's compute waits for its copy: the n-th streamed block computed uses the n-th upload.
  size_t upload = 0;
  for (size_t i = 0; i < compute.size(); ++i) {
    const int block = static_cast<int>(i % kBlocks);
    if (i >= kBlocks && block_is_resident(block, kBlocks, kResident)) continue;
    const json& copy = copies[upload++];
    EXPECT_EQ(copy["name"], compute[i]["name"]);
    EXPECT_GE(compute[i]["start"].get<double>(), copy["end"].get<double>() - kSlackSeconds) << i;
  }
  EXPECT_GT(profile["summary"]["copy_compute_overlap"].get<double>(), 0.0);
}

}  // namespace
}  // namespace canvas
