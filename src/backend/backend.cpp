#include "backend/backend.h"

#include <mutex>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace canvas {

namespace {

class HostTimestamp final : public DeviceTimestamp {
 public:
  std::optional<std::chrono::steady_clock::time_point> time() override { return time_; }

 private:
  std::chrono::steady_clock::time_point time_ = std::chrono::steady_clock::now();
};

struct BackendRegistry {
  std::mutex mutex;
  std::vector<std::unique_ptr<Backend>> backends;
};

BackendRegistry& registry() {
  // Backends hold buffers (workspaces) that return to their allocators when the registry is destroyed
  // at exit; constructing the allocator registry first makes it outlive this one.
  allocator_for(Device::cpu());
  static BackendRegistry instance;
  return instance;
}

}  // namespace

Timestamp host_timestamp() {
  return std::make_shared<HostTimestamp>();
}

Backend& backend_for(Device device) {
  BackendRegistry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (auto& backend : reg.backends) {
    if (backend->device() == device) return *backend;
  }
  if (device.is_cpu()) {
    reg.backends.push_back(std::make_unique<CpuBackend>(device.index));
    return *reg.backends.back();
  }
  if (device.is_meta()) throw Error("no backend for device meta: call register_meta_backend() first");
  throw Error("no backend for device " + device.str() +
              ": this build has no CUDA support (configure with -DCANVAS_CUDA=ON)");
}

void register_backend(std::unique_ptr<Backend> backend) {
  BackendRegistry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (auto& existing : reg.backends) {
    check(!(existing->device() == backend->device()),
          "a backend for " + backend->device().str() + " is already registered");
  }
  reg.backends.push_back(std::move(backend));
}

}  // namespace canvas
