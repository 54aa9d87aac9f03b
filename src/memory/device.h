// Where a tensor's bytes live.
#pragma once

#include <cstdint>
#include <string>

namespace canvas {

// Meta tensors have a shape, a dtype and an allocation but no data: ops on them only allocate, so a dry
// run through the allocator measures a job's memory without computing anything.
enum class DeviceType : uint8_t { CPU, CUDA, Meta };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  static Device meta() { return {DeviceType::Meta, 0}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_meta() const { return type == DeviceType::Meta; }
  std::string str() const {
    if (is_cpu()) return index == 0 ? "cpu" : "cpu:" + std::to_string(index);
    if (is_meta()) return "meta";
    return "cuda:" + std::to_string(index);
  }
  bool operator==(const Device&) const = default;
};

}  // namespace canvas
