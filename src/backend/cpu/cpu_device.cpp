// What the CPU device is and how much memory it has.
#include <fstream>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"
#include "memory/host_memory.h"
#include "util/thread_pool.h"

namespace canvas {

namespace {

// The "model name" of /proc/cpuinfo; empty where the kernel gives none (some ARM systems).
std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (!line.starts_with("model name")) continue;
    const size_t colon = line.find(':');
    const size_t begin = colon == std::string::npos ? colon : line.find_first_not_of(" \t", colon + 1);
    return begin == std::string::npos ? std::string() : line.substr(begin);
  }
  return {};
}

}  // namespace

std::string CpuBackend::description() const {
  const std::string model = cpu_model_name();
  return "cpu (" + (model.empty() ? "" : model + ", ") + std::to_string(thread_pool().threads()) +
         " threads)";
}

int64_t CpuBackend::scratch_reserve_bytes() const {
  return cpu::kColumnBufferBytes;
}

DeviceMemoryInfo CpuBackend::memory_info() {
  const HostMemoryInfo host = host_memory_info();
  return {host.available_bytes, host.total_bytes};
}

}  // namespace canvas
