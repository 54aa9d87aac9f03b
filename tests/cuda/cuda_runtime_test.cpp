// What a machine without a usable GPU is told: the reason names the missing piece.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"

namespace canvas {
namespace {

TEST(CudaRuntime, AMissingDriverIsNamedAsMissing) {
  if (register_cuda_backends() > 0) GTEST_SKIP() << "a CUDA device is present";
  if (void* driver = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
    ::dlclose(driver);
    GTEST_SKIP() << "the NVIDIA driver is installed";
  }
  EXPECT_EQ(cuda_unavailable_reason(), "no NVIDIA driver found (libcuda.so.1 is not installed)");
}

}  // namespace
}  // namespace canvas
