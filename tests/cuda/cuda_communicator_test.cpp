// Communicators between CUDA ranks: every part arrives exactly, on the receiving rank's device. Skipped
// where no CUDA device is visible, NCCL cannot be loaded, or (for the two-GPU case) only one GPU is.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/communicator.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/nccl_communicator.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

// Why NCCL cannot be used here; empty when it can.
std::string nccl_unavailable() {
  try {
    nccl_library();
    return {};
  } catch (const Error& error) {
    return error.what();
  }
}

// sends[r][s] on rank r's device, its values naming r and s so a swapped pair fails; each is a transposed
// view when it has two axes, so the communicator's contiguous copy is exercised too. The values are exact
// in bf16.
std::vector<std::vector<Tensor>> labelled_sends(const std::vector<Device>& devices, const Shape& shape,
                                                DType dtype) {
  std::vector<std::vector<Tensor>> sends(devices.size());
  for (size_t from = 0; from < devices.size(); ++from) {
    for (size_t to = 0; to < devices.size(); ++to) {
      std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
      for (size_t i = 0; i < values.size(); ++i)
        values[i] = static_cast<float>(16 * from + 4 * to) + 0.25f * static_cast<float>(i % 8);
      Tensor part = Tensor::from_floats(values, shape).to(dtype).to(devices[from]);
      sends[from].push_back(shape.size() == 2 ? part.view({shape[1], shape[0]}).transpose(0, 1) : part);
    }
  }
  return sends;
}

void expect_delivered(Communicator& communicator, const std::vector<std::vector<Tensor>>& sends) {
  const std::vector<Device>& devices = communicator.devices();
  const std::vector<std::vector<Tensor>> received = communicator.all_to_all(sends);
  ASSERT_EQ(received.size(), devices.size());
  for (size_t to = 0; to < devices.size(); ++to) {
    ASSERT_EQ(received[to].size(), devices.size());
    for (size_t from = 0; from < devices.size(); ++from) {
      const Tensor& got = received[to][from];
      const Tensor& sent = sends[from][to];
      SCOPED_TRACE("rank " + std::to_string(from) + " to rank " + std::to_string(to) + ", shape " +
                   shape_str(sent.shape()));
      EXPECT_EQ(got.device(), devices[to]);
      EXPECT_EQ(got.shape(), sent.shape());
      EXPECT_EQ(got.dtype(), sent.dtype());
      EXPECT_TRUE(got.is_contiguous());
      EXPECT_EQ(got.to_floats(), sent.to_floats());
    }
  }
}

const std::vector<Shape> kShapes = {{3, 5, 7}, {13, 1}, {0, 4}, {1}};

class CudaCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gpus_ = register_cuda_backends();
    if (gpus_ == 0) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  }
  int gpus_ = 0;
};

TEST_F(CudaCommunicatorTest, NcclToSelfOnOneRank) {
  if (std::string why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  std::unique_ptr<Communicator> communicator = nccl_communicator({Device::cuda(0)});
  EXPECT_EQ(communicator->description().rfind("nccl ", 0), 0u) << communicator->description();
  for (DType dtype : {DType::BF16, DType::F32}) {
    for (const Shape& shape : kShapes)
      expect_delivered(*communicator, labelled_sends({Device::cuda(0)}, shape, dtype));
  }
}

TEST_F(CudaCommunicatorTest, CopiesBetweenTwoRanksOnOneGpu) {
  const std::vector<Device> devices = {Device::cuda(0), Device::cuda(0)};
  std::unique_ptr<Communicator> communicator = create_communicator(devices);
  EXPECT_EQ(communicator->description(), "device copies");
  for (DType dtype : {DType::BF16, DType::F32}) {
    for (const Shape& shape : kShapes) expect_delivered(*communicator, labelled_sends(devices, shape, dtype));
  }
}

TEST_F(CudaCommunicatorTest, NcclBetweenTwoGpus) {
  if (gpus_ < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << gpus_;
  if (std::string why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const std::vector<Device> devices = {Device::cuda(0), Device::cuda(1)};
  std::unique_ptr<Communicator> communicator = create_communicator(devices);
  EXPECT_EQ(communicator->description().rfind("nccl ", 0), 0u) << communicator->description();
  // Twice: the second exchange reuses memory the first one freed.
  for (int round = 0; round < 2; ++round) {
    for (DType dtype : {DType::BF16, DType::F32}) {
      for (const Shape& shape : kShapes)
        expect_delivered(*communicator, labelled_sends(devices, shape, dtype));
    }
  }
}

TEST_F(CudaCommunicatorTest, NcclRejectsBadRequests) {
  if (std::string why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  std::unique_ptr<Communicator> communicator = nccl_communicator({Device::cuda(0)});
  const Tensor on_host = Tensor::zeros({4}, DType::F32);
  const Tensor on_gpu = on_host.to(Device::cuda(0));
  EXPECT_THROW(communicator->all_to_all({{on_host}}), Error);
  EXPECT_THROW(communicator->all_to_all({{on_gpu}, {on_gpu}}), Error);
  EXPECT_THROW(communicator->all_to_all({{on_gpu, on_gpu}}), Error);
  EXPECT_THROW(nccl_communicator({Device::cuda(0), Device::cuda(0)}), Error);
  EXPECT_THROW(nccl_communicator({Device::cpu()}), Error);
}

// Needs neither a GPU nor NCCL.
TEST(NcclLibraryTest, MissingLibraryErrorSaysWhatToDo) {
  try {
    load_nccl({"/nonexistent/libnccl.so.2", "libc.so.6"});
    FAIL() << "loaded NCCL from libraries that are not NCCL";
  } catch (const Error& error) {
    const std::string message = error.what();
    test::expect_contains(message, "/nonexistent/libnccl.so.2");
    test::expect_contains(message, "libc.so.6: loads but has no ncclGetVersion");
    test::expect_contains(message, "libnccl2");
    test::expect_contains(message, "CANVAS_NCCL_LIBRARY");
  }
}

// Loading and asking the version needs no GPU.
TEST(NcclLibraryTest, ReportsTheVersion) {
  if (std::string why = nccl_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const std::string version = nccl_library().version();
  EXPECT_EQ(version.rfind("2.", 0), 0u) << version;
}

}  // namespace
}  // namespace canvas
