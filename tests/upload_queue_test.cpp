// The CPU backend's upload queue: exact byte copies from read-only (mapped-style) sources, refusals that
// name the problem and leave every destination untouched, and the timestamps the profiler reads.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "test_util.h"

namespace canvas {
namespace {

// A read-only tensor over `bytes`, as WeightSource hands out slices of a mapped checkpoint.
Tensor external_tensor(const std::shared_ptr<std::vector<uint8_t>>& bytes, const Shape& shape, DType dtype) {
  auto buffer = std::make_shared<Buffer>(std::shared_ptr<const void>(bytes, bytes->data()), bytes->data(),
                                         static_cast<int64_t>(bytes->size()), Device::cpu());
  return Tensor::from_buffer(std::move(buffer), shape, dtype);
}

std::shared_ptr<std::vector<uint8_t>> pattern_bytes(size_t count, uint8_t seed) {
  auto bytes = std::make_shared<std::vector<uint8_t>>(count);
  for (size_t i = 0; i < count; ++i) (*bytes)[i] = static_cast<uint8_t>(i * 131 + seed + i / 251);
  return bytes;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST(CpuUploadQueue, CopiesEveryByteIntoDestinationsOfAnyShape) {
  auto queue = backend_for(Device::cpu()).create_upload_queue(0);
  // An odd size over several of the copy's per-thread chunks, a bf16 matrix into a flat destination, and a
  // block-quantized tensor moved whole.
  auto large = pattern_bytes((size_t{3} << 20) + 7, 1);
  auto matrix = pattern_bytes(6 * 10 * 2, 2);
  auto quantized = pattern_bytes(storage_bytes(DType::Q8_0, 64), 3);
  std::vector<UploadCopy> copies = {
      {external_tensor(large, {static_cast<int64_t>(large->size())}, DType::U8),
       Tensor::zeros({static_cast<int64_t>(large->size())}, DType::U8)},
      {external_tensor(matrix, {6, 10}, DType::BF16), Tensor::zeros({60}, DType::BF16)},
      {external_tensor(quantized, {2, 32}, DType::Q8_0), Tensor::empty({2, 32}, DType::Q8_0)},
  };
  const Fence fence = queue->upload(copies, queue->compute_fence(), /*times=*/nullptr);
  ASSERT_NE(fence, nullptr);
  queue->compute_wait(fence);
  for (const UploadCopy& copy : copies) EXPECT_TRUE(same_bytes(copy.source, copy.destination));
  EXPECT_NE(queue->upload({}, nullptr, /*times=*/nullptr), nullptr);
}

TEST(CpuUploadQueue, RejectsMismatchesBeforeCopyingAnything) {
  auto queue = backend_for(Device::cpu()).create_upload_queue(0);
  auto bytes = pattern_bytes(64 * 4, 5);
  const Tensor source = external_tensor(bytes, {64}, DType::F32);
  Tensor untouched = Tensor::zeros({64}, DType::F32);
  const auto batch_with = [&](Tensor bad_source, Tensor bad_destination) {
    return [&queue, &source, &untouched, bad_source, bad_destination] {
      queue->upload({{source, untouched}, {bad_source, bad_destination}}, nullptr, /*times=*/nullptr);
    };
  };

  test::expect_contains(test::error_of(batch_with(source, Tensor::zeros({63}, DType::F32))),
                        "does not hold the source");
  test::expect_contains(test::error_of(batch_with(source, Tensor::zeros({64}, DType::BF16))),
                        "does not hold the source");
  test::expect_contains(test::error_of(batch_with(source, Tensor::zeros({8, 8}, DType::F32).transpose(0, 1))),
                        "not a contiguous writable tensor");
  // The destination must be writable memory of our own, not another mapped tensor.
  test::expect_contains(
      test::error_of(batch_with(source, external_tensor(pattern_bytes(64 * 4, 6), {64}, DType::F32))),
      "not a contiguous writable tensor");
  test::expect_contains(test::error_of(batch_with(external_tensor(bytes, {8, 8}, DType::F32).transpose(0, 1),
                                                  Tensor::zeros({8, 8}, DType::F32))),
                        "is not contiguous");
  test::expect_contains(test::error_of(batch_with(Tensor(), Tensor::zeros({64}, DType::F32))), "undefined");
  // The first, valid copy of each rejected batch did not run.
  EXPECT_EQ(untouched.to_floats(), std::vector<float>(64, 0.0f));
}

TEST(CpuUploadQueue, TimesItsCopiesOnTheHostClock) {
  using SteadyClock = std::chrono::steady_clock;
  auto queue = backend_for(Device::cpu()).create_upload_queue(0);
  auto bytes = pattern_bytes(size_t{8} << 20, 7);
  const Tensor source = external_tensor(bytes, {static_cast<int64_t>(bytes->size())}, DType::U8);
  const Tensor destination = Tensor::zeros(source.shape(), DType::U8);
  const SteadyClock::time_point before = SteadyClock::now();
  UploadTimes times;
  queue->upload({{source, destination}}, nullptr, &times);
  const SteadyClock::time_point after = SteadyClock::now();
  EXPECT_TRUE(same_bytes(source, destination));
  ASSERT_TRUE(times.start && times.end);
  // The copy is done when upload() returns, so both are already passed.
  const std::optional<SteadyClock::time_point> start = times.start->time(), end = times.end->time();
  ASSERT_TRUE(start && end);
  EXPECT_LE(before, *start);
  EXPECT_LT(*start, *end);
  EXPECT_LE(*end, after);
}

TEST(CpuBackend, ComputeTimestampsAreTheHostClockNow) {
  using SteadyClock = std::chrono::steady_clock;
  const SteadyClock::time_point before = SteadyClock::now();
  const Timestamp timestamp = backend_for(Device::cpu()).compute_timestamp();
  const SteadyClock::time_point after = SteadyClock::now();
  const std::optional<SteadyClock::time_point> time = timestamp->time();
  ASSERT_TRUE(time);
  EXPECT_LE(before, *time);
  EXPECT_LE(*time, after);
}

}  // namespace
}  // namespace canvas
