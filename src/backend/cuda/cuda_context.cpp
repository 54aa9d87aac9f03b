#include "backend/cuda/cuda_context.h"

#include <string_view>

namespace canvas {

namespace {

// "src/backend/cuda/x.cu:12" rather than the build machine's absolute path.
std::string location(const char* file, int line) {
  std::string_view path(file);
  const size_t source_root = path.rfind("src/");
  if (source_root != std::string_view::npos) path.remove_prefix(source_root);
  return std::string(path) + ":" + std::to_string(line);
}

std::string failure(const char* call, const char* file, int line, const std::string& reason) {
  return std::string(call) + " failed at " + location(file, line) + ": " + reason;
}

// Device memory in use and the device's capacity, for out-of-memory reports; -1 when unknown.
void device_memory(int64_t& in_use, int64_t& capacity) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    in_use = capacity = -1;
    return;
  }
  in_use = static_cast<int64_t>(total_bytes - free_bytes);
  capacity = static_cast<int64_t>(total_bytes);
}

[[noreturn]] void throw_out_of_memory(const std::string& message) {
  int64_t in_use = -1, capacity = -1;
  device_memory(in_use, capacity);
  throw OutOfMemoryError(message, 0, in_use, capacity);
}

// Library workspaces grow in steps of this size, so slowly growing requests do not reallocate each time.
constexpr int64_t kWorkspaceGranularity = int64_t{1} << 20;

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  const std::string message =
      failure(call, file, line, std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
  if (status == cudaErrorMemoryAllocation) {
    // Allocation failures are not sticky; clear the error so later calls do not report it again.
    (void)cudaGetLastError();
    throw_out_of_memory(message);
  }
  throw Error(message);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const std::string message = failure(
      call, file, line, std::string(cublasGetStatusName(status)) + ": " + cublasGetStatusString(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw_out_of_memory(message);
  throw Error(message);
}

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  std::string reason = cudnnGetErrorString(status);
  // cuDNN keeps a more specific explanation of the last failure on this thread.
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));
  if (detail[0] != '\0') reason += " (" + std::string(detail) + ")";
  const std::string message = failure(call, file, line, reason);
  if (status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED) {
    throw_out_of_memory(message);
  }
  throw Error(message);
}

void* CudaContext::workspace(int64_t bytes) {
  if (bytes > 0 && (!workspace_.defined() || workspace_.nbytes() < bytes)) {
    // Release the old workspace first so growing never holds both. Frees are ordered on the compute
    // stream, so work still queued on the old one finishes before its memory is reused.
    workspace_ = Tensor();
    const int64_t rounded =
        (bytes + kWorkspaceGranularity - 1) / kWorkspaceGranularity * kWorkspaceGranularity;
    OwnerScope scope(MemoryOwner{"cuda_workspace", -1, MemoryRole::Scratch});
    workspace_ = Tensor::empty({rounded}, DType::U8, Device::cuda(device));
  }
  return workspace_.defined() ? workspace_.raw_data() : nullptr;
}

}  // namespace canvas
