#include "backend/meta/meta_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <limits>
#include <mutex>
#include <string>

#include "backend/backend.h"

namespace canvas {

namespace {

// Address space, not memory: MAP_NORESERVE leaves even a 40 GB weight placement uncommitted, and a stray
// host read of a meta tensor sees the kernel's zero page instead of faulting. Read-only, so that a data
// rlimit (which counts private writable mappings) does not count it either; nothing writes meta memory.
class MappedAddressSource final : public MemorySource {
 public:
  void* allocate(int64_t bytes) override {
    void* pointer =
        mmap(nullptr, mapped_length(bytes), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return pointer == MAP_FAILED ? nullptr : pointer;
  }
  void deallocate(void* pointer, int64_t bytes) override { munmap(pointer, mapped_length(bytes)); }

 private:
  // mmap refuses empty mappings, and munmap must see the length mmap was given.
  static size_t mapped_length(int64_t bytes) {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_t rounded = (static_cast<size_t>(bytes) + page - 1) / page * page;
    return rounded == 0 ? page : rounded;
  }
};

class MetaUploadQueue final : public UploadQueue {
 public:
  Fence upload(std::vector<UploadCopy>, const Fence&, UploadTimes* times) override {
    if (times) {
      const Timestamp now = host_timestamp();
      *times = {now, now};
    }
    return std::make_shared<DeviceFence>();
  }
  void compute_wait(const Fence&) override {}
  Fence compute_fence() override { return std::make_shared<DeviceFence>(); }
};

// Every kernel is a no-op: ops.cpp has already checked the arguments and allocated the outputs, which is
// all a dry run measures.
class MetaBackend final : public Backend {
 public:
  Device device() const override { return Device::meta(); }
  std::string description() const override { return "meta (dry runs: allocations without data)"; }
  void synchronize() override {}
  // Unbounded: the meta allocator's budget is what limits a dry run.
  int64_t scratch_reserve_bytes() const override { return 0; }
  DeviceMemoryInfo memory_info() override {
    constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max() / 4;
    return {kUnbounded, kUnbounded};
  }
  std::unique_ptr<UploadQueue> create_upload_queue(int64_t) override {
    return std::make_unique<MetaUploadQueue>();
  }
  // Kernels that do nothing are done at once.
  Timestamp compute_timestamp() override { return host_timestamp(); }

  void copy(const Tensor&, Tensor&) override {}
  void fill_zero(Tensor&) override {}
  void transfer(const Tensor&, Tensor&) override {}

  void binary(BinaryOp, const Tensor&, const Tensor&, Tensor&) override {}
  void unary(UnaryOp, const Tensor&, Tensor&) override {}
  void scale(const Tensor&, float, Tensor&) override {}
  void clamp(const Tensor&, float, float, Tensor&) override {}
  void modulate(const Tensor&, const Tensor&, const Tensor&, Tensor&) override {}
  void gated_add(const Tensor&, const Tensor&, const Tensor&, Tensor&) override {}

  void layer_norm(const Tensor&, const Tensor&, const Tensor&, float, Tensor&) override {}
  void rms_norm(const Tensor&, const Tensor&, float, Tensor&) override {}
  void l2_normalize(const Tensor&, int, float, Tensor&) override {}
  void softmax(const Tensor&, Tensor&) override {}
  void vector_norm(const Tensor&, Tensor&) override {}

  void linear(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&) override {}
  void matmul(const Tensor&, const Tensor&, Tensor&) override {}
  void attention(const Tensor&, const Tensor&, const Tensor&, const ops::AttentionMask&, float,
                 Tensor&) override {}
  void rope(const Tensor&, const Tensor&, const Tensor&, ops::RopeLayout, Tensor&) override {}

  void conv2d(const Tensor&, const Tensor&, const Tensor&, const ops::Conv2dParams&, Tensor&) override {}
  void upsample_nearest2x(const Tensor&, Tensor&) override {}
  // The CPU backend validates ids by reading them; meta ids have no values to check.
  void embedding(const Tensor&, const Tensor&, Tensor&) override {}
};

}  // namespace

void register_meta_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_allocator(Device::meta(), std::make_unique<Allocator>(Device::meta(), "meta",
                                                                   std::make_unique<MappedAddressSource>()));
    register_backend(std::make_unique<MetaBackend>());
  });
}

}  // namespace canvas
