#include "planning/dry_run.h"

#include <mutex>

#include "backend/meta/meta_backend.h"
#include "memory/allocator.h"

namespace canvas {

int64_t measure_activation_peak(const std::function<void()>& run) {
  static std::mutex turn;
  std::lock_guard lock(turn);
  register_meta_backend();
  Allocator& meta = allocator_for(Device::meta());
  const int64_t before = meta.in_use();
  meta.reset_peak();
  run();
  return meta.peak() - before;
}

}  // namespace canvas
