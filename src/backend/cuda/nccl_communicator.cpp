// All-to-all over NCCL point-to-point calls: one group per exchange, each rank's sends and receives on its
// device's compute stream, so the exchange is ordered with the model's work there without host waits.
#include "backend/cuda/nccl_communicator.h"

#include <dlfcn.h>

#include <cstdlib>
#include <set>
#include <type_traits>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_support.h"
#include "backend/cuda/cuda_context.h"

namespace canvas {

namespace {

void check_nccl(const NcclLibrary& nccl, ncclResult_t result, const char* call) {
  if (result != ncclSuccess) throw Error(std::string(call) + " failed: " + nccl.get_error_string(result));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const NcclLibrary& nccl, std::vector<Device> devices)
      : nccl_(nccl), devices_(std::move(devices)), comms_(devices_.size()) {
    std::vector<int> indices;
    for (const Device& device : devices_) {
      indices.push_back(device.index);
      streams_.push_back(static_cast<CudaBackend&>(backend_for(device)).context().compute_stream);
    }
    // NVLink multicast (NVLS) stays off, whatever the environment says: setting it up can take a shared
    // host's GPUs out of service for everyone on the machine. NCCL reads this at its first init.
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    description_ = "nccl " + nccl_.version();
    check_nccl(nccl_, nccl_.comm_init_all(comms_.data(), static_cast<int>(comms_.size()), indices.data()),
               "ncclCommInitAll");
  }

  ~NcclCommunicator() override {
    for (ncclComm_t comm : comms_) (void)nccl_.comm_destroy(comm);
  }

  const std::vector<Device>& devices() const override { return devices_; }
  std::string description() const override { return description_; }

  std::vector<std::vector<Tensor>> all_to_all(const std::vector<std::vector<Tensor>>& sends) override {
    check_all_to_all(devices_, sends);
    const size_t ranks = devices_.size();
    // Contiguous copies of the sends live until the group is queued: from then on their frees, like all of
    // the allocator's, queue on the compute stream behind the NCCL kernels that read them.
    std::vector<std::vector<Tensor>> parts(ranks), received(ranks, std::vector<Tensor>(ranks));
    for (size_t from = 0; from < ranks; ++from) {
      for (size_t to = 0; to < ranks; ++to) {
        const Tensor& part = sends[from][to];
        parts[from].push_back(part.contiguous());
        received[to][from] = Tensor::empty(part.shape(), part.dtype(), devices_[to]);
      }
    }
    for (size_t rank = 0; rank < ranks; ++rank) {
      const size_t bytes = static_cast<size_t>(parts[rank][rank].nbytes());
      if (bytes == 0) continue;
      cuda::DeviceGuard guard(devices_[rank].index);
      CANVAS_CUDA_CHECK(cudaMemcpyAsync(received[rank][rank].raw_data(), parts[rank][rank].raw_data(), bytes,
                                        cudaMemcpyDeviceToDevice, streams_[rank]));
    }
    check_nccl(nccl_, nccl_.group_start(), "ncclGroupStart");
    try {
      for (size_t from = 0; from < ranks; ++from) {
        for (size_t to = 0; to < ranks; ++to) {
          // Both ends know the size, so empty parts are skipped on both.
          const size_t bytes = static_cast<size_t>(parts[from][to].nbytes());
          if (from == to || bytes == 0) continue;
          check_nccl(nccl_,
                     nccl_.send(parts[from][to].raw_data(), bytes, ncclUint8, static_cast<int>(to),
                                comms_[from], streams_[from]),
                     "ncclSend");
          check_nccl(nccl_,
                     nccl_.recv(received[to][from].raw_data(), bytes, ncclUint8, static_cast<int>(from),
                                comms_[to], streams_[to]),
                     "ncclRecv");
        }
      }
    } catch (...) {
      // An open group would capture this thread's later NCCL calls.
      (void)nccl_.group_end();
      throw;
    }
    check_nccl(nccl_, nccl_.group_end(), "ncclGroupEnd");
    return received;
  }

 private:
  const NcclLibrary& nccl_;
  std::vector<Device> devices_;
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  std::string description_;
};

}  // namespace

std::string NcclLibrary::version() const {
  int code = 0;
  check_nccl(*this, get_version(&code), "ncclGetVersion");
  // NCCL_VERSION(X, Y, Z) is X * 10000 + Y * 100 + Z since 2.9, X * 1000 + Y * 100 + Z before.
  const int major_unit = code >= 10000 ? 10000 : 1000;
  return std::to_string(code / major_unit) + "." + std::to_string(code % major_unit / 100) + "." +
         std::to_string(code % 100);
}

NcclLibrary load_nccl(const std::vector<std::string>& candidates) {
  std::string tried;
  for (const std::string& candidate : candidates) {
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      tried += "\n  " + std::string(dlerror());  // names the file
      continue;
    }
    NcclLibrary nccl;
    nccl.path = candidate;
    const char* missing = nullptr;
    auto resolve = [&](auto& entry, const char* name) {
      void* symbol = dlsym(handle, name);
      if (!symbol && !missing) missing = name;
      entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(symbol);
    };
    resolve(nccl.get_version, "ncclGetVersion");
    resolve(nccl.get_error_string, "ncclGetErrorString");
    resolve(nccl.comm_init_all, "ncclCommInitAll");
    resolve(nccl.comm_destroy, "ncclCommDestroy");
    resolve(nccl.group_start, "ncclGroupStart");
    resolve(nccl.group_end, "ncclGroupEnd");
    resolve(nccl.send, "ncclSend");
    resolve(nccl.recv, "ncclRecv");
    if (!missing) return nccl;
    tried += "\n  " + candidate + ": loads but has no " + missing;
    dlclose(handle);
  }
  throw Error(
      "could not load NCCL, which exchanges data between the GPUs of a multi-GPU job. Tried:" + tried +
      "\nInstall NCCL 2 (Debian/Ubuntu: apt install libnccl2), or set CANVAS_NCCL_LIBRARY to a libnccl.so.2, "
      "e.g. site-packages/nvidia/nccl/lib/libnccl.so.2 from the nvidia-nccl-cu12 or nvidia-nccl-cu13 pip "
      "package.");
}

const NcclLibrary& nccl_library() {
  static const NcclLibrary library = [] {
    std::vector<std::string> candidates;
    if (const char* path = std::getenv("CANVAS_NCCL_LIBRARY"); path && *path) candidates.push_back(path);
    candidates.insert(candidates.end(), {"libnccl.so.2", "libnccl.so"});
    return load_nccl(candidates);
  }();
  return library;
}

std::unique_ptr<Communicator> nccl_communicator(const std::vector<Device>& devices) {
  check(!devices.empty(), "a communicator needs at least one device");
  std::set<int> indices;
  for (const Device& device : devices) {
    check(device.is_cuda(), "an NCCL communicator was asked to span " + device.str());
    check(indices.insert(device.index).second, "an NCCL communicator was given " + device.str() + " twice");
  }
  return std::make_unique<NcclCommunicator>(nccl_library(), devices);
}

}  // namespace canvas
