// Devices, memory and the backend object: registration at startup, the device and pinned-host memory
// sources, stream and library-handle lifetimes, and the host-side helpers of cuda_backend_support.h.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_timestamp.h"
#include "backend/cuda/nccl_communicator.h"
#include "memory/host_memory.h"
#include "memory/host_page_locks.h"

namespace canvas {

namespace {

// Lets the frees queued on `stream` land, then hands the pool's cached memory back to the driver.
void release_pool_memory(int device, cudaStream_t stream) {
  cudaMemPool_t pool = nullptr;
  CANVAS_CUDA_CHECK(cudaStreamSynchronize(stream));
  CANVAS_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  CANVAS_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
}

// Device memory from the device's stream-ordered pool (cudaMallocAsync), ordered on the backend's
// compute stream. Plain cudaMalloc/cudaFree would be correct too, but cudaFree waits for the whole
// device, which would stall the queue every time a temporary tensor is released. Here a release is
// queued behind the work that may still use the memory, and the pool hands it to the next allocation
// without a trip to the driver. Tensors used on another stream must be joined back to the compute stream
// (an event) before they are released.
class DeviceMemorySource final : public MemorySource {
 public:
  DeviceMemorySource(int device, cudaStream_t stream) : device_(device), stream_(stream) {}

  void* allocate(int64_t bytes) override {
    cuda::DeviceGuard guard(device_);
    // Zero-byte tensors still get a distinct, valid pointer.
    const size_t request = static_cast<size_t>(std::max<int64_t>(bytes, 1));
    void* pointer = nullptr;
    cudaError_t status = cudaMallocAsync(&pointer, request, stream_);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      // The pool may hold freed blocks too fragmented for this request: give them back and try once
      // more before reporting out-of-memory.
      release_pool_memory(device_, stream_);
      status = cudaMallocAsync(&pointer, request, stream_);
      if (status == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return nullptr;
      }
    }
    CANVAS_CUDA_CHECK(status);
    return pointer;
  }

  // Runs from Buffer destructors, which cannot report; a failure here means the runtime is already
  // shutting down at process exit, when the memory goes back with the process anyway.
  void deallocate(void* pointer, int64_t) override {
    int previous = 0;
    const bool restore = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
    if (cudaSetDevice(device_) != cudaSuccess || cudaFreeAsync(pointer, stream_) != cudaSuccess) {
      (void)cudaGetLastError();
    }
    if (restore && cudaSetDevice(previous) != cudaSuccess) (void)cudaGetLastError();
  }

 private:
  int device_;
  cudaStream_t stream_;
};

// Page-locked host memory: the DMA engines read and write it directly, so copies through it can run
// asynchronously. Portable, so every device sees it as pinned.
class PinnedHostMemorySource final : public MemorySource {
 public:
  void* allocate(int64_t bytes) override {
    void* pointer = nullptr;
    const cudaError_t status =
        cudaHostAlloc(&pointer, static_cast<size_t>(std::max<int64_t>(bytes, 1)), cudaHostAllocPortable);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    CANVAS_CUDA_CHECK(status);
    return pointer;
  }

  void deallocate(void* pointer, int64_t) override {
    if (cudaFreeHost(pointer) != cudaSuccess) (void)cudaGetLastError();
  }
};

// The library handles and streams of a CudaContext, destroyed together.
struct ContextHandles {
  cudaStream_t compute_stream, copy_stream;
  cublasHandle_t cublas;
  cublasLtHandle_t cublaslt;
  cudnnHandle_t cudnn;
};

ContextHandles handles_of(const CudaContext& context) {
  return {context.compute_stream, context.copy_stream, context.cublas, context.cublaslt, context.cudnn};
}

// Destroys what was created, skipping null handles. Errors are ignored: this runs from a destructor or
// while another error is already propagating.
void release_handles(const ContextHandles& handles) {
  if (handles.cudnn) (void)cudnnDestroy(handles.cudnn);
  if (handles.cublaslt) (void)cublasLtDestroy(handles.cublaslt);
  if (handles.cublas) (void)cublasDestroy(handles.cublas);
  if (handles.copy_stream) (void)cudaStreamDestroy(handles.copy_stream);
  if (handles.compute_stream) (void)cudaStreamDestroy(handles.compute_stream);
  (void)cudaGetLastError();
}

std::string& unavailable_reason() {
  static std::string reason;
  return reason;
}

// Whether the NVIDIA driver's library can be loaded. Without it the runtime still answers "no device" or
// "insufficient driver", which would send the user looking for a driver update instead of a driver.
bool driver_library_installed() {
  void* driver = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!driver) return false;
  ::dlclose(driver);
  return true;
}

int register_all_devices() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  // A machine without a GPU or with an older driver has no CUDA device to offer; that is an answer,
  // not an error, so CPU-only machines can ask.
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver ||
      status == cudaErrorNoKernelImageForDevice || status == cudaErrorSystemDriverMismatch ||
      status == cudaErrorCompatNotSupportedOnDevice) {
    const bool no_driver =
        (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) && !driver_library_installed();
    unavailable_reason() =
        no_driver ? "no NVIDIA driver found (libcuda.so.1 is not installed)" : cudaGetErrorString(status);
    (void)cudaGetLastError();
    return 0;
  }
  CANVAS_CUDA_CHECK(status);
  for (int index = 0; index < count; ++index) {
    auto backend = std::make_unique<CudaBackend>(index);
    // Keep freed memory cached in the pool across synchronizations instead of returning it to the
    // driver at each one; DeviceMemorySource trims the pool itself when an allocation fails.
    cudaMemPool_t pool = nullptr;
    uint64_t keep_all = std::numeric_limits<uint64_t>::max();
    CANVAS_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
    CANVAS_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    const Device device = Device::cuda(index);
    register_allocator(device, std::make_unique<Allocator>(device, device.str(),
                                                           std::make_unique<DeviceMemorySource>(
                                                               index, backend->context().compute_stream)));
    register_backend(std::move(backend));
  }
  return count;
}

}  // namespace

int register_cuda_backends() {
  // Registration is once per process; later calls report the same device count.
  static std::once_flag once;
  static int count = 0;
  std::call_once(once, [] {
    count = register_all_devices();
    if (count > 0) {
      register_pinned_host_allocator(&pinned_host_allocator());
      host_page_locks().set_locker(cuda_host_page_locker(count));
    }
    register_communicator_factory(DeviceType::CUDA, nccl_communicator);
  });
  return count;
}

const std::string& cuda_unavailable_reason() {
  return unavailable_reason();
}

Allocator& pinned_host_allocator() {
  static Allocator allocator(Device::cpu(), "pinned_host", std::make_unique<PinnedHostMemorySource>());
  return allocator;
}

CudaBackend::CudaBackend(int device_index)
    : device_index_(device_index),
      context_(std::make_unique<CudaContext>()),
      clock_(std::make_unique<CudaClock>(device_index)) {
  cuda::DeviceGuard guard(device_index);
  CudaContext& context = *context_;
  context.device = device_index;
  try {
    CANVAS_CUDA_CHECK(cudaGetDeviceProperties(&context.properties, device_index));
    // Non-blocking: work other code puts on the legacy default stream must not serialize with ours.
    CANVAS_CUDA_CHECK(cudaStreamCreateWithFlags(&context.compute_stream, cudaStreamNonBlocking));
    CANVAS_CUDA_CHECK(cudaStreamCreateWithFlags(&context.copy_stream, cudaStreamNonBlocking));
    CANVAS_CUBLAS_CHECK(cublasCreate(&context.cublas));
    CANVAS_CUBLAS_CHECK(cublasSetStream(context.cublas, context.compute_stream));
    CANVAS_CUBLAS_CHECK(cublasLtCreate(&context.cublaslt));
    CANVAS_CUDNN_CHECK(cudnnCreate(&context.cudnn));
    CANVAS_CUDNN_CHECK(cudnnSetStream(context.cudnn, context.compute_stream));
  } catch (...) {
    release_handles(handles_of(context));
    throw;
  }
}

CudaBackend::~CudaBackend() {
  if (!context_) return;
  int previous = 0;
  const bool switched =
      cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(device_index_) == cudaSuccess;
  (void)cudaStreamSynchronize(context_->compute_stream);
  (void)cudaStreamSynchronize(context_->copy_stream);
  // The context's workspace is freed on the compute stream, so the context goes before the streams.
  const ContextHandles handles = handles_of(*context_);
  context_.reset();
  release_handles(handles);
  if (switched) (void)cudaSetDevice(previous);
  (void)cudaGetLastError();
}

std::string CudaBackend::description() const {
  int driver = 0;
  CANVAS_CUDA_CHECK(cudaDriverGetVersion(&driver));
  const cudaDeviceProp& properties = context_->properties;
  // The driver reports its CUDA version as 1000 * major + 10 * minor.
  return std::string(properties.name) + " (sm_" + std::to_string(properties.major) +
         std::to_string(properties.minor) + ", driver " + std::to_string(driver / 1000) + "." +
         std::to_string(driver % 1000 / 10) + ")";
}

// Memory cached in this device's pool (freed tensors kept for reuse) counts as used here.
DeviceMemoryInfo CudaBackend::memory_info() {
  cuda::DeviceGuard guard(device_index_);
  size_t free_bytes = 0, total_bytes = 0;
  CANVAS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return {static_cast<int64_t>(free_bytes), static_cast<int64_t>(total_bytes)};
}

void CudaBackend::release_cached_memory() {
  cuda::DeviceGuard guard(device_index_);
  release_pool_memory(device_index_, context_->compute_stream);
}

// cuBLASLt's and cuDNN's workspaces (attention, and the VAE's convolutions, the largest) and what the
// stream-ordered pool loses to fragmentation between a job's phases.
int64_t CudaBackend::scratch_reserve_bytes() const {
  return int64_t{512} << 20;
}

void CudaBackend::synchronize() {
  cuda::DeviceGuard guard(device_index_);
  CANVAS_CUDA_CHECK(cudaStreamSynchronize(context_->compute_stream));
  CANVAS_CUDA_CHECK(cudaStreamSynchronize(context_->copy_stream));
}

namespace cuda {

DeviceGuard::DeviceGuard(int device) : device_(device) {
  CANVAS_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device_) CANVAS_CUDA_CHECK(cudaSetDevice(device_));
}

DeviceGuard::~DeviceGuard() {
  if (previous_ != device_ && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
}

Tensor scratch_tensor(const Shape& shape, DType dtype, Device device) {
  MemoryOwner owner = current_owner();
  owner.role = MemoryRole::Scratch;
  OwnerScope scope(std::move(owner));
  return Tensor::empty(shape, dtype, device);
}

Tensor contiguous_kernel_input(CudaBackend& backend, const Tensor& x) {
  if (x.is_contiguous() && is_kernel_dtype(x.dtype())) return x;
  Tensor copy =
      scratch_tensor(x.shape(), is_kernel_dtype(x.dtype()) ? x.dtype() : DType::F32, backend.device());
  backend.copy(x, copy);
  return copy;
}

KernelOutput::KernelOutput(CudaBackend& backend, Tensor& out) : backend_(backend), out_(out) {
  check(out.is_contiguous(), "the CUDA backend writes only contiguous outputs here");
  work_ = is_kernel_dtype(out.dtype()) ? out : scratch_tensor(out.shape(), DType::F32, backend.device());
}

void KernelOutput::finish() {
  if (!is_kernel_dtype(out_.dtype())) backend_.copy(work_, out_);
}

void check_on_device(const Tensor& tensor, Device device, const char* op) {
  check(tensor.device() == device, std::string(op) + ": a tensor on " + tensor.device().str() +
                                       " was handed to the " + device.str() + " backend");
}

}  // namespace cuda

}  // namespace canvas
