// Per-device CUDA state shared by the backend's kernels and library calls.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "tensor/tensor.h"
#include "util/error.h"

namespace canvas {

// Throws canvas::Error (or OutOfMemoryError for allocation failures) naming the failed call.
void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);

#define CANVAS_CUDA_CHECK(call)                                              \
  do {                                                                       \
    cudaError_t canvas_status_ = (call);                                     \
    if (canvas_status_ != cudaSuccess)                                       \
      ::canvas::throw_cuda_error(canvas_status_, #call, __FILE__, __LINE__); \
  } while (0)
#define CANVAS_CUBLAS_CHECK(call)                                              \
  do {                                                                         \
    cublasStatus_t canvas_status_ = (call);                                    \
    if (canvas_status_ != CUBLAS_STATUS_SUCCESS)                               \
      ::canvas::throw_cublas_error(canvas_status_, #call, __FILE__, __LINE__); \
  } while (0)
#define CANVAS_CUDNN_CHECK(call)                                              \
  do {                                                                        \
    cudnnStatus_t canvas_status_ = (call);                                    \
    if (canvas_status_ != CUDNN_STATUS_SUCCESS)                               \
      ::canvas::throw_cudnn_error(canvas_status_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: launch-configuration errors surface here rather than at a later call.
#define CANVAS_CUDA_CHECK_LAUNCH() CANVAS_CUDA_CHECK(cudaGetLastError())

struct CudaContext {
  int device = 0;
  cudaDeviceProp properties{};
  cudaStream_t compute_stream = nullptr;  // all kernels and library calls, in order
  cudaStream_t copy_stream = nullptr;     // host<->device copies that overlap compute
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  cudnnHandle_t cudnn = nullptr;

  // Device scratch for library workspaces, grown on demand through the allocator (owner role Scratch)
  // and kept, so steady-state steps allocate nothing.
  void* workspace(int64_t bytes);

 private:
  Tensor workspace_;
};

}  // namespace canvas
