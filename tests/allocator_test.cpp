// The allocator's accounting: bytes per owner, peak, budgets, releases, owner scopes and the listener.
#include "memory/allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tensor/tensor.h"
#include "test_util.h"

namespace canvas {
namespace {

// malloc-backed memory that can be told to refuse, and counts what it still has out.
class CountingSource final : public MemorySource {
 public:
  void* allocate(int64_t bytes) override {
    if (refuse) return nullptr;
    ++live_blocks;
    return std::malloc(static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  }
  void deallocate(void* pointer, int64_t) override {
    --live_blocks;
    std::free(pointer);
  }
  bool refuse = false;
  int live_blocks = 0;
};

struct TestAllocator {
  TestAllocator() {
    auto owned = std::make_unique<CountingSource>();
    source = owned.get();
    allocator = std::make_unique<Allocator>(Device::cpu(), "test", std::move(owned));
  }
  CountingSource* source;
  std::unique_ptr<Allocator> allocator;
};

const MemoryOwner kVaeWeights{"vae", -1, MemoryRole::Weights};
const MemoryOwner kBlockActivations{"transformer", 3, MemoryRole::Activations};

TEST(Allocator, TracksBytesByOwnerAndPeak) {
  TestAllocator test;
  Allocator& allocator = *test.allocator;
  auto first = allocator.allocate(100, kVaeWeights);
  auto second = allocator.allocate(50, kBlockActivations);
  auto third = allocator.allocate(25, kVaeWeights);
  EXPECT_EQ(allocator.in_use(), 175);
  EXPECT_EQ(allocator.usage_by_owner().at(kVaeWeights), 125);
  EXPECT_EQ(allocator.usage_by_owner().at(kBlockActivations), 50);
  EXPECT_EQ(first->owner().component, "vae");
  EXPECT_EQ(first->bytes(), 100);
  first.reset();
  EXPECT_EQ(allocator.in_use(), 75);
  EXPECT_EQ(allocator.peak(), 175);
  EXPECT_EQ(allocator.usage_by_owner().at(kVaeWeights), 25);
  allocator.reset_peak();
  EXPECT_EQ(allocator.peak(), 75);
  second.reset();
  third.reset();
  EXPECT_EQ(allocator.in_use(), 0);
  EXPECT_TRUE(allocator.usage_by_owner().empty());
  EXPECT_EQ(test.source->live_blocks, 0);
}

TEST(Allocator, BudgetExceededThrowsOutOfMemoryWithFigures) {
  TestAllocator test;
  Allocator& allocator = *test.allocator;
  allocator.set_budget(100);
  EXPECT_EQ(allocator.budget(), 100);
  auto held = allocator.allocate(60, kVaeWeights);
  try {
    allocator.allocate(50, kBlockActivations);
    FAIL() << "allocation past the budget succeeded";
  } catch (const OutOfMemoryError& error) {
    EXPECT_EQ(error.requested_bytes(), 50);
    EXPECT_EQ(error.in_use_bytes(), 60);
    EXPECT_EQ(error.limit_bytes(), 100);
    test::expect_contains(error.what(), "transformer.block3/activations");
  }
  EXPECT_EQ(allocator.in_use(), 60);
  auto exact_fit = allocator.allocate(40, kVaeWeights);
  EXPECT_EQ(allocator.in_use(), 100);
  allocator.set_budget(std::nullopt);
  auto unlimited = allocator.allocate(1000, kVaeWeights);
  EXPECT_EQ(allocator.in_use(), 1100);
}

TEST(Allocator, SourceRefusalIsOutOfMemoryWithoutLimit) {
  TestAllocator test;
  test.source->refuse = true;
  try {
    test.allocator->allocate(64, kVaeWeights);
    FAIL() << "a refused allocation succeeded";
  } catch (const OutOfMemoryError& error) {
    EXPECT_EQ(error.requested_bytes(), 64);
    EXPECT_EQ(error.limit_bytes(), -1);
  }
  EXPECT_EQ(test.allocator->in_use(), 0);
  EXPECT_THROW(test.allocator->allocate(-1, kVaeWeights), Error);
}

TEST(Allocator, TensorBuffersAreReleasedWhenTheLastViewDies) {
  Allocator& allocator = allocator_for(Device::cpu());
  const MemoryOwner owner{"allocator_test_release", 2, MemoryRole::Activations};
  ASSERT_EQ(allocator.usage_by_owner().count(owner), 0u);
  Tensor view;
  {
    OwnerScope scope(owner);
    Tensor tensor = Tensor::empty({16, 16}, DType::F32);
    EXPECT_EQ(allocator.usage_by_owner().at(owner), 1024);
    view = tensor.slice(0, 0, 4);
  }
  // The view keeps the whole buffer alive after the tensor it came from is gone.
  EXPECT_EQ(allocator.usage_by_owner().at(owner), 1024);
  view = Tensor();
  EXPECT_EQ(allocator.usage_by_owner().count(owner), 0u);
}

TEST(Allocator, OwnerScopesNestAndRestorePerThread) {
  const std::string outside = current_owner().component;
  {
    OwnerScope outer({"text_encoder", -1, MemoryRole::Weights});
    EXPECT_EQ(current_owner().component, "text_encoder");
    {
      OwnerScope inner({"transformer", 5, MemoryRole::Scratch});
      EXPECT_EQ(current_owner().component, "transformer");
      EXPECT_EQ(current_owner().block, 5);
      EXPECT_EQ(current_owner().role, MemoryRole::Scratch);
    }
    EXPECT_EQ(current_owner().component, "text_encoder");
    EXPECT_EQ(current_owner().role, MemoryRole::Weights);
    std::string seen_by_other_thread;
    std::thread([&] { seen_by_other_thread = current_owner().component; }).join();
    EXPECT_EQ(seen_by_other_thread, "unowned");
  }
  EXPECT_EQ(current_owner().component, outside);
}

TEST(Allocator, ListenerSeesAllocationsAndReleases) {
  TestAllocator test;
  struct Seen {
    std::string component;
    int64_t bytes;
    int64_t in_use_after;
  };
  std::vector<Seen> events;
  test.allocator->set_listener([&](const AllocationEvent& event) {
    events.push_back({event.owner.component, event.bytes, event.in_use_after});
  });
  auto first = test.allocator->allocate(10, kVaeWeights);
  auto second = test.allocator->allocate(20, kBlockActivations);
  first.reset();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].component, "vae");
  EXPECT_EQ(events[0].bytes, 10);
  EXPECT_EQ(events[0].in_use_after, 10);
  EXPECT_EQ(events[1].component, "transformer");
  EXPECT_EQ(events[1].in_use_after, 30);
  EXPECT_EQ(events[2].component, "vae");
  EXPECT_EQ(events[2].bytes, -10);
  EXPECT_EQ(events[2].in_use_after, 20);
  test.allocator->set_listener({});
  second.reset();
  EXPECT_EQ(events.size(), 3u);
}

TEST(Allocator, OwnerNamesAndRegistry) {
  EXPECT_EQ((MemoryOwner{"vae", 3, MemoryRole::Scratch}.str()), "vae.block3/scratch");
  EXPECT_EQ((MemoryOwner{"pipeline", -1, MemoryRole::Staging}.str()), "pipeline/staging");
  EXPECT_EQ(memory_role_name(MemoryRole::Weights), "weights");
  Allocator& cpu = allocator_for(Device::cpu());
  EXPECT_EQ(&cpu, &allocator_for(Device::cpu()));
  EXPECT_EQ(cpu.name(), "cpu");
  EXPECT_THROW(
      register_allocator(Device::cpu(), std::make_unique<Allocator>(Device::cpu(), "second",
                                                                    std::make_unique<CountingSource>())),
      Error);
}

}  // namespace
}  // namespace canvas
