// Locking a mapped checkpoint's pages in place for direct copies to a GPU: the registry of locked ranges
// the upload path consults, the pages chosen for streamed weights, and the background locking with its
// budget and failures. A recording locker stands in for the CUDA driver, which CI has not got.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include "memory/host_page_locks.h"
#include "planning/weight_page_locks.h"
#include "test_util.h"

namespace canvas {
namespace {

// Records what it is asked to lock; refuses from the `fail_from`th lock on.
class RecordingLocker final : public HostPageLocker {
 public:
  void lock(const void* begin, int64_t bytes) override {
    if (++calls == fail_from) throw Error("injected page-lock failure");
    locked_bytes += bytes;
    (void)begin;
  }
  void unlock(const void*) override { ++unlocks; }

  int fail_from = 0;
  std::atomic<int> calls{0};
  std::atomic<int> unlocks{0};
  std::atomic<int64_t> locked_bytes{0};
};

// Page-aligned host memory standing in for a mapped checkpoint: tensors viewing it are read-only and
// external, as those of a real mapping are.
struct FakeMapping {
  explicit FakeMapping(int64_t bytes)
      : memory(static_cast<std::byte*>(
                   std::aligned_alloc(static_cast<size_t>(host_page_bytes()), static_cast<size_t>(bytes))),
               std::free) {
    buffer = std::make_shared<Buffer>(std::shared_ptr<const void>(memory.get(), [](const void*) {}),
                                      memory.get(), bytes, Device::cpu());
  }
  Tensor view(int64_t offset, int64_t bytes) const {
    return Tensor::from_buffer(buffer, {bytes}, DType::U8, offset);
  }
  std::unique_ptr<std::byte, decltype(&std::free)> memory;
  std::shared_ptr<Buffer> buffer;
};

const int64_t kPage = host_page_bytes();

TEST(HostPageLocks, CutsSourcesIntoLockedAndStagedRuns) {
  RecordingLocker locker;
  HostPageLocks locks;
  locks.set_locker(&locker);
  FakeMapping mapping(8 * kPage);
  const std::byte* base = mapping.memory.get();
  locks.lock(base + kPage, 2 * kPage, {"transformer", -1, MemoryRole::Weights});
  locks.lock(base + 4 * kPage, kPage, {"text_encoder", -1, MemoryRole::Weights});
  EXPECT_EQ(locks.locked_bytes(), 3 * kPage);
  EXPECT_EQ(locks.locked_bytes("transformer"), 2 * kPage);

  // From half a page in to half a page before the end: staged, locked, staged, locked, staged.
  const std::vector<HostRun> runs = locks.runs(base + kPage / 2, 7 * kPage);
  ASSERT_EQ(runs.size(), 5u);
  const int64_t half = kPage / 2;
  const std::vector<HostRun> expected{{0, half, false},
                                      {half, 2 * kPage, true},
                                      {half + 2 * kPage, kPage, false},
                                      {half + 3 * kPage, kPage, true},
                                      {half + 4 * kPage, 2 * kPage + half, false}};
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].offset, expected[i].offset) << i;
    EXPECT_EQ(runs[i].bytes, expected[i].bytes) << i;
    EXPECT_EQ(runs[i].locked, expected[i].locked) << i;
  }
  // Wholly inside one range: one locked run.
  const std::vector<HostRun> inside = locks.runs(base + kPage + 10, 100);
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_TRUE(inside[0].locked);

  // Overlaps and partial pages are refused without calling the locker.
  const int calls = locker.calls;
  EXPECT_THROW(locks.lock(base + 2 * kPage, 2 * kPage, {}), Error);
  EXPECT_THROW(locks.lock(base + 6 * kPage + 1, kPage, {}), Error);
  EXPECT_EQ(locker.calls, calls);

  locks.unlock(base + kPage);
  locks.unlock(base + 4 * kPage);
  EXPECT_EQ(locker.unlocks, 2);
  EXPECT_EQ(locks.locked_bytes(), 0);
  EXPECT_EQ(locks.runs(base, kPage).size(), 1u);
}

TEST(HostPageLocks, RefusedLockRecordsNothing) {
  RecordingLocker locker;
  locker.fail_from = 1;
  HostPageLocks locks;
  locks.set_locker(&locker);
  FakeMapping mapping(2 * kPage);
  const std::string message = test::error_of([&] {
    locks.lock(mapping.memory.get(), kPage, {"transformer", -1, MemoryRole::Weights});
  });
  EXPECT_NE(message.find("injected"), std::string::npos) << message;
  EXPECT_EQ(locks.locked_bytes(), 0);
  EXPECT_FALSE(locks.runs(mapping.memory.get(), kPage).front().locked);

  HostPageLocks without;
  EXPECT_FALSE(without.available());
  EXPECT_THROW(without.lock(mapping.memory.get(), kPage, {}), Error);
}

// Two "blocks" of three tensors each, packed as a safetensors file packs them (not page-aligned).
struct StreamedBlocks {
  StreamedBlocks() : mapping(64 * kPage) {
    int64_t offset = 100;
    for (int block = 0; block < 2; ++block) {
      for (int64_t bytes : {5 * kPage + 17, 3 * kPage, 7 * kPage - 40}) {
        tensors.push_back(mapping.view(offset, bytes));
        offset += bytes;
      }
    }
    end = offset;
    for (int block = 0; block < 2; ++block) {
      WeightGroup group;
      group.owner = {"transformer", block, MemoryRole::Weights};
      for (int i = 0; i < 3; ++i) group.tensors.push_back(&tensors[static_cast<size_t>(block * 3 + i)]);
      groups.push_back(group);
    }
  }
  FakeMapping mapping;
  std::vector<Tensor> tensors;
  std::vector<WeightGroup> groups;
  int64_t end = 0;
};

TEST(WeightPageLocks, SpansAreWholePagesInsideTheWeightsWithinTheBudget) {
  StreamedBlocks weights;
  const auto* base = weights.mapping.memory.get();
  // Everything: one stretch from byte 100 to the end, so its pages run from the second to the last whole one.
  std::vector<PageSpan> spans = page_spans(weights.groups, int64_t{1} << 40, kPage, 4 * kPage);
  int64_t covered = 0;
  for (const PageSpan& span : spans) {
    EXPECT_EQ((span.begin - base) % kPage, 0);
    EXPECT_EQ(span.bytes % kPage, 0);
    EXPECT_LE(span.bytes, 4 * kPage);
    if (&span != &spans.front()) {
      EXPECT_EQ(span.begin, (&span - 1)->begin + (&span - 1)->bytes);
    }
    covered += span.bytes;
  }
  EXPECT_EQ(spans.front().begin, base + kPage);
  EXPECT_EQ(covered, weights.end / kPage * kPage - kPage);

  // A budget of one block and a half takes the first block only.
  const int64_t first_block = weights.groups[0].bytes();
  spans = page_spans(weights.groups, first_block * 3 / 2, kPage, int64_t{1} << 30);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].begin, base + kPage);
  EXPECT_EQ(spans[0].bytes, (100 + first_block) / kPage * kPage - kPage);
  EXPECT_TRUE(page_spans(weights.groups, first_block - 1, kPage, kPage).empty());

  // Converted copies (owned, writable buffers) are never locked.
  Tensor copy = Tensor::zeros({16 * kPage}, DType::U8);
  WeightGroup converted;
  converted.tensors.push_back(&copy);
  EXPECT_TRUE(page_spans({converted}, int64_t{1} << 40, kPage, kPage).empty());
}

TEST(WeightPageLocks, LocksInTheBackgroundAndUnlocksWhenDone) {
  RecordingLocker locker;
  HostPageLocks locks;
  locks.set_locker(&locker);
  StreamedBlocks weights;
  {
    WeightPageLocks page_locks(weights.groups, int64_t{1} << 40, {"transformer", -1, MemoryRole::Weights},
                               locks);
    EXPECT_EQ(page_locks.wait(), std::nullopt);
    EXPECT_EQ(page_locks.locked_bytes(), page_locks.target_bytes());
    EXPECT_EQ(locks.locked_bytes("transformer"), page_locks.target_bytes());
    EXPECT_GT(page_locks.target_bytes(), 20 * kPage);
    // A second placement of the same weights (a parked arrangement's) finds them locked and locks nothing.
    WeightPageLocks again(weights.groups, int64_t{1} << 40, {"transformer", -1, MemoryRole::Weights}, locks);
    EXPECT_EQ(again.wait(), std::nullopt);
    EXPECT_EQ(again.locked_bytes(), 0);
  }
  EXPECT_EQ(locker.unlocks, locker.calls);
  EXPECT_EQ(locks.locked_bytes(), 0);
}

TEST(WeightPageLocks, AFailureStopsTheLockingAndKeepsWhatWasLocked) {
  RecordingLocker locker;
  HostPageLocks locks;
  locks.set_locker(&locker);
  StreamedBlocks weights;
  // Chunks are 256 MiB, so these small blocks lock in one call: fail the second placement's first.
  {
    WeightPageLocks first(std::vector<WeightGroup>{weights.groups[0]}, int64_t{1} << 40,
                          {"transformer", 0, MemoryRole::Weights}, locks);
    ASSERT_EQ(first.wait(), std::nullopt);
    locker.fail_from = locker.calls + 1;
    WeightPageLocks second(std::vector<WeightGroup>{weights.groups[1]}, int64_t{1} << 40,
                           {"transformer", 1, MemoryRole::Weights}, locks);
    const std::optional<std::string> failure = second.wait();
    ASSERT_TRUE(failure.has_value());
    EXPECT_NE(failure->find("injected page-lock failure"), std::string::npos) << *failure;
    EXPECT_NE(failure->find("the rest is staged"), std::string::npos) << *failure;
    EXPECT_EQ(second.locked_bytes(), 0);
    EXPECT_EQ(locks.locked_bytes(), first.locked_bytes());
  }
  EXPECT_EQ(locks.locked_bytes(), 0);
  EXPECT_EQ(locker.unlocks, 1);
}

}  // namespace
}  // namespace canvas
