// The one path for every tensor allocation. Each allocation carries its owner (component, block, role),
// so the planner and the profiler can see who holds what, and a budget turns "too much" into the same
// OutOfMemoryError a real failure raises.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "memory/device.h"
#include "util/error.h"

namespace canvas {

enum class MemoryRole : uint8_t { Weights, Activations, Scratch, Staging };
std::string_view memory_role_name(MemoryRole role);

struct MemoryOwner {
  std::string component = "unowned";  // "text_encoder", "transformer", "vae", "pipeline", ...
  int block = -1;                     // transformer block index, -1 for the component as a whole
  MemoryRole role = MemoryRole::Activations;

  std::string str() const;
  auto key() const { return std::tie(component, block, role); }
  bool operator<(const MemoryOwner& other) const { return key() < other.key(); }
};

// The owner that allocations made on this thread are charged to, until the scope ends.
class OwnerScope {
 public:
  explicit OwnerScope(MemoryOwner owner);
  ~OwnerScope();
  OwnerScope(const OwnerScope&) = delete;
  OwnerScope& operator=(const OwnerScope&) = delete;

 private:
  MemoryOwner previous_;
};
const MemoryOwner& current_owner();

// Raw memory of one kind (host, device, pinned host). Returns nullptr when the system refuses.
class MemorySource {
 public:
  virtual ~MemorySource() = default;
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* pointer, int64_t bytes) = 0;
};

class Allocator;

// A block of bytes. Either owned through an Allocator (returned to it on destruction) or external,
// e.g. a memory-mapped checkpoint, kept alive by `keep_alive`.
class Buffer {
 public:
  Buffer(Allocator* allocator, void* data, int64_t bytes, Device device, MemoryOwner owner);
  Buffer(std::shared_ptr<const void> keep_alive, const void* data, int64_t bytes, Device device);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  const MemoryOwner& owner() const { return owner_; }
  // External buffers (mapped files) are read-only.
  bool writable() const { return allocator_ != nullptr; }

 private:
  Allocator* allocator_ = nullptr;
  std::shared_ptr<const void> keep_alive_;
  void* data_;
  int64_t bytes_;
  Device device_;
  MemoryOwner owner_;
};

struct AllocationEvent {
  const MemoryOwner& owner;
  int64_t bytes;  // positive for an allocation, negative for a release
  int64_t in_use_after;
};

class Allocator {
 public:
  Allocator(Device device, std::string name, std::unique_ptr<MemorySource> source);

  // Throws OutOfMemoryError when the budget would be exceeded or the source refuses.
  std::shared_ptr<Buffer> allocate(int64_t bytes, const MemoryOwner& owner = current_owner());

  Device device() const { return device_; }
  const std::string& name() const { return name_; }
  // A budget of std::nullopt means only the source's own capacity limits allocations.
  void set_budget(std::optional<int64_t> budget_bytes);
  std::optional<int64_t> budget() const;
  int64_t in_use() const;
  int64_t peak() const;
  void reset_peak();
  std::map<MemoryOwner, int64_t> usage_by_owner() const;
  // Called after every allocation and release; the profiler subscribes here.
  void set_listener(std::function<void(const AllocationEvent&)> listener);
  // The listener set now, so a subscriber can chain to it and put it back when it leaves.
  std::function<void(const AllocationEvent&)> listener() const;

 private:
  friend class Buffer;
  void release(void* data, int64_t bytes, const MemoryOwner& owner);

  Device device_;
  std::string name_;
  std::unique_ptr<MemorySource> source_;
  mutable std::mutex mutex_;
  std::optional<int64_t> budget_;
  int64_t in_use_ = 0;
  int64_t peak_ = 0;
  std::map<MemoryOwner, int64_t> usage_;
  std::function<void(const AllocationEvent&)> listener_;
};

// Sets an allocator's budget for a scope (a job) and puts the previous one back after.
class BudgetScope {
 public:
  BudgetScope(Allocator& allocator, std::optional<int64_t> budget_bytes)
      : allocator_(allocator), previous_(allocator.budget()) {
    if (budget_bytes) allocator.set_budget(budget_bytes);
  }
  ~BudgetScope() { allocator_.set_budget(previous_); }
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  Allocator& allocator_;
  std::optional<int64_t> previous_;
};

// The process-wide allocator for a device's memory. Backends register theirs for non-CPU devices.
Allocator& allocator_for(Device device);
void register_allocator(Device device, std::unique_ptr<Allocator> allocator);

}  // namespace canvas
