#include "memory/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "memory/fault_injection.h"
#include "util/format.h"

namespace canvas {

namespace {

thread_local MemoryOwner t_current_owner;

// Host memory, aligned for vector loads.
class HostMemorySource final : public MemorySource {
 public:
  void* allocate(int64_t bytes) override {
    constexpr size_t kAlignment = 64;
    size_t rounded = (static_cast<size_t>(bytes) + kAlignment - 1) / kAlignment * kAlignment;
    return std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  }
  void deallocate(void* pointer, int64_t) override { std::free(pointer); }
};

struct AllocatorRegistry {
  std::mutex mutex;
  std::vector<std::pair<Device, std::unique_ptr<Allocator>>> allocators;
};

AllocatorRegistry& registry() {
  static AllocatorRegistry instance;
  return instance;
}

}  // namespace

std::string_view memory_role_name(MemoryRole role) {
  switch (role) {
    case MemoryRole::Weights:
      return "weights";
    case MemoryRole::Activations:
      return "activations";
    case MemoryRole::Scratch:
      return "scratch";
    case MemoryRole::Staging:
      return "staging";
  }
  return "unknown";
}

std::string MemoryOwner::str() const {
  std::string text = component;
  if (block >= 0) text += ".block" + std::to_string(block);
  return text + "/" + std::string(memory_role_name(role));
}

OwnerScope::OwnerScope(MemoryOwner owner) : previous_(std::exchange(t_current_owner, std::move(owner))) {}
OwnerScope::~OwnerScope() {
  t_current_owner = std::move(previous_);
}
const MemoryOwner& current_owner() {
  return t_current_owner;
}

Buffer::Buffer(Allocator* allocator, void* data, int64_t bytes, Device device, MemoryOwner owner)
    : allocator_(allocator), data_(data), bytes_(bytes), device_(device), owner_(std::move(owner)) {}

Buffer::Buffer(std::shared_ptr<const void> keep_alive, const void* data, int64_t bytes, Device device)
    : keep_alive_(std::move(keep_alive)), data_(const_cast<void*>(data)), bytes_(bytes), device_(device) {
  owner_.component = "mapped";
  owner_.role = MemoryRole::Weights;
}

Buffer::~Buffer() {
  if (allocator_) allocator_->release(data_, bytes_, owner_);
}

Allocator::Allocator(Device device, std::string name, std::unique_ptr<MemorySource> source)
    : device_(device), name_(std::move(name)), source_(std::move(source)) {}

std::shared_ptr<Buffer> Allocator::allocate(int64_t bytes, const MemoryOwner& owner) {
  check(bytes >= 0, "negative allocation size requested by " + owner.str());
  std::unique_lock lock(mutex_);
  // The meta device's dry runs hold no memory, so nothing real can fail there.
  if (!device_.is_meta() && FaultInjector::instance().should_fail()) {
    throw OutOfMemoryError(
        name_ + ": injected allocation failure (CANVAS_FAIL_ALLOC=" + FaultInjector::instance().spec() +
            ") allocating " + format_bytes(bytes) + " for " + owner.str(),
        bytes, in_use_, -1, /*injected=*/true);
  }
  if (budget_ && in_use_ + bytes > *budget_) {
    throw OutOfMemoryError(name_ + ": allocating " + format_bytes(bytes) + " for " + owner.str() +
                               " would exceed the budget of " + format_bytes(*budget_) + " (" +
                               format_bytes(in_use_) + " in use)",
                           bytes, in_use_, *budget_);
  }
  void* data = source_->allocate(bytes);
  if (!data) {
    throw OutOfMemoryError(name_ + ": out of memory allocating " + format_bytes(bytes) + " for " +
                               owner.str() + " (" + format_bytes(in_use_) + " in use)",
                           bytes, in_use_, -1);
  }
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  usage_[owner] += bytes;
  if (listener_) listener_({owner, bytes, in_use_});
  lock.unlock();
  return std::make_shared<Buffer>(this, data, bytes, device_, owner);
}

void Allocator::release(void* data, int64_t bytes, const MemoryOwner& owner) {
  std::lock_guard lock(mutex_);
  source_->deallocate(data, bytes);
  in_use_ -= bytes;
  auto entry = usage_.find(owner);
  if (entry != usage_.end() && (entry->second -= bytes) == 0) usage_.erase(entry);
  if (listener_) listener_({owner, -bytes, in_use_});
}

void Allocator::set_budget(std::optional<int64_t> budget_bytes) {
  std::lock_guard lock(mutex_);
  budget_ = budget_bytes;
}

std::optional<int64_t> Allocator::budget() const {
  std::lock_guard lock(mutex_);
  return budget_;
}

int64_t Allocator::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

int64_t Allocator::peak() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

void Allocator::reset_peak() {
  std::lock_guard lock(mutex_);
  peak_ = in_use_;
}

std::map<MemoryOwner, int64_t> Allocator::usage_by_owner() const {
  std::lock_guard lock(mutex_);
  return usage_;
}

void Allocator::set_listener(std::function<void(const AllocationEvent&)> listener) {
  std::lock_guard lock(mutex_);
  listener_ = std::move(listener);
}

std::function<void(const AllocationEvent&)> Allocator::listener() const {
  std::lock_guard lock(mutex_);
  return listener_;
}

Allocator& allocator_for(Device device) {
  AllocatorRegistry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (auto& [registered, allocator] : reg.allocators) {
    if (registered == device) return *allocator;
  }
  if (device.is_cpu()) {
    reg.allocators.emplace_back(
        device, std::make_unique<Allocator>(device, device.str(), std::make_unique<HostMemorySource>()));
    return *reg.allocators.back().second;
  }
  if (device.is_meta()) throw Error("no allocator for device meta: call register_meta_backend() first");
  throw Error("no allocator for device " + device.str() + ": this build has no backend for it");
}

void register_allocator(Device device, std::unique_ptr<Allocator> allocator) {
  AllocatorRegistry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (auto& [registered, existing] : reg.allocators) {
    check(!(registered == device), "an allocator for " + device.str() + " is already registered");
  }
  reg.allocators.emplace_back(device, std::move(allocator));
}

}  // namespace canvas
