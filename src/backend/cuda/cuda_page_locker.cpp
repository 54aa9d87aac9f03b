#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/cuda_backend.h"
#include "memory/host_page_locks.h"

namespace canvas {

namespace {

// Registers ranges of a read-only file mapping with the CUDA driver in place. Read-only registration is
// what lets the driver pin pages it may not write (a PROT_READ, MAP_SHARED mapping of the page cache);
// without it the driver would ask for write access and fail, or copy-on-write a private mapping page by
// page. Portable: every device of the process copies from the range.
class CudaHostPageLocker final : public HostPageLocker {
 public:
  void lock(const void* begin, int64_t bytes) override {
    const cudaError_t status = cudaHostRegister(const_cast<void*>(begin), static_cast<size_t>(bytes),
                                                cudaHostRegisterReadOnly | cudaHostRegisterPortable);
    if (status == cudaSuccess) return;
    // A failed registration leaves its error as the runtime's last one; later checks must not see it.
    (void)cudaGetLastError();
    throw Error("cannot page-lock " + std::to_string(bytes) +
                " bytes of a mapped checkpoint in place: " + cudaGetErrorString(status));
  }

  void unlock(const void* begin) override {
    if (cudaHostUnregister(const_cast<void*>(begin)) != cudaSuccess) (void)cudaGetLastError();
  }
};

}  // namespace

HostPageLocker* cuda_host_page_locker(int device_count) {
  for (int device = 0; device < device_count; ++device) {
    int registers = 0, read_only = 0;
    if (cudaDeviceGetAttribute(&registers, cudaDevAttrHostRegisterSupported, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&read_only, cudaDevAttrHostRegisterReadOnlySupported, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    if (registers == 0 || read_only == 0) return nullptr;
  }
  static CudaHostPageLocker locker;
  return &locker;
}

}  // namespace canvas
