// The CUDA backend against the CPU backend on the same random inputs (fresh values each run; the seed is
// printed with any failure). CUDA outputs are poisoned with all-ones bytes (NaN in every float dtype)
// before each op, so an element a kernel forgets to write shows up as a mismatch. Skipped where no CUDA
// device is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <source_location>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/ops.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

const Device kGpu = Device::cuda(0);

CudaBackend& gpu() {
  return dynamic_cast<CudaBackend&>(backend_for(kGpu));
}

double tolerance_for(DType dtype) {
  return dtype == DType::F32 ? 1e-5 : dtype == DType::F16 ? 2e-3 : 1e-2;
}

// The same tensor on both devices; views are applied to both with `map`.
struct Pair {
  Tensor cpu, gpu;
  template <typename Fn>
  Pair map(Fn&& fn) const {
    return {fn(cpu), fn(gpu)};
  }
};

// A CUDA tensor of `like`'s shape and dtype filled with all-ones bytes, ordered on the compute stream.
Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor out = Tensor::empty(shape, dtype, kGpu);
  EXPECT_EQ(cudaMemsetAsync(out.raw_data(), 0xff, out.nbytes(), gpu().context().compute_stream), cudaSuccess);
  return out;
}
Tensor poisoned_like(const Tensor& like) {
  return poisoned(like.shape(), like.dtype());
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
    seed_ = std::random_device{}();
    generator_.seed(seed_);
  }

  // Uniform values in [low, high) stored as `dtype` (rounded on the CPU), on both devices.
  Pair random(const Shape& shape, DType dtype = DType::F32, float low = -2.0f, float high = 2.0f) {
    std::uniform_real_distribution<float> distribution(low, high);
    std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
    for (float& value : values) value = distribution(generator_);
    Tensor cpu = Tensor::from_floats(values, shape).to(dtype);
    return {cpu, cpu.to(kGpu)};
  }

  // test::expect_close (max deviation over max reference magnitude; a NaN where the CPU has a number
  // fails outright), with the seed of the random inputs in the message.
  void expect_close(const Tensor& actual, const Tensor& expected, double tolerance,
                    std::source_location where = std::source_location::current()) {
    ASSERT_EQ(actual.dtype(), expected.dtype()) << "seed " << seed_;
    SCOPED_TRACE("seed " + std::to_string(seed_));
    test::expect_close(actual, expected, tolerance, where);
  }
  void expect_close(const Tensor& actual, const Tensor& expected,
                    std::source_location where = std::source_location::current()) {
    expect_close(actual, expected, tolerance_for(expected.dtype()), where);
  }

  // Values equal element for element, NaN matching NaN (payloads may differ).
  void expect_same_values(const Tensor& actual, const Tensor& expected) {
    ASSERT_EQ(actual.shape(), expected.shape());
    const std::vector<float> got = actual.to_floats(), want = expected.to_floats();
    for (size_t i = 0; i < want.size(); ++i) {
      if (std::isnan(want[i]) && std::isnan(got[i])) continue;
      ASSERT_EQ(got[i], want[i]) << "element " << i << ", seed " << seed_;
    }
  }

  uint32_t seed_ = 0;
  std::mt19937 generator_;
};

constexpr DType kFloatDtypes[] = {DType::F32, DType::BF16, DType::F16};
constexpr DType kPlainDtypes[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::F8_E5M2,
                                  DType::I64, DType::I32,  DType::U8,  DType::Bool};

// ---- copies ----

TEST_F(CudaOpsTest, CopiesBetweenEveryPairOfDtypesFollowTheCpuRules) {
  // Random values plus the edge cases of every conversion: NaN, infinities, values past each range,
  // negative zero, halves for truncation and bool. Finite magnitudes stay below 2^36, where the CPU's
  // e5m2 encoder (tensor/dtype.cpp) stops saturating to 57344 and rounds to 49152; for the same reason
  // integer sources get ±2e10 where the float source has infinities (which would saturate to ±9.2e18).
  Pair base = random({6, 9}, DType::F32, -600.0f, 600.0f);
  std::vector<float> values = base.cpu.to_floats();
  const float specials[] = {std::nanf(""), INFINITY, -INFINITY, 1e6f,   -3e9f,  1e10f,
                            0.5f,          -0.5f,    -0.0f,     300.0f, 464.0f, 70000.0f};
  std::copy(std::begin(specials), std::end(specials), values.begin());
  const Tensor float_source = Tensor::from_floats(values, {6, 9});
  values[1] = 2e10f;
  values[2] = -2e10f;
  const Tensor integer_source = Tensor::from_floats(values, {6, 9});
  for (DType from : kPlainDtypes) {
    Tensor cpu_source = (is_float(from) ? float_source : integer_source).to(from);
    Pair input{cpu_source, cpu_source.to(kGpu)};
    for (DType to : kPlainDtypes) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to)));
      // Strided source (transposed) into a strided destination (every other column of a wider tensor).
      Pair src = input.map([](const Tensor& t) { return t.transpose(0, 1); });
      Tensor cpu_dst = Tensor::empty({9, 12}, to);
      std::memset(cpu_dst.raw_data(), 0xff, cpu_dst.nbytes());
      Tensor gpu_dst = poisoned({9, 12}, to);
      Tensor cpu_view = Tensor::strided_view(cpu_dst, {9, 6}, {12, 2});
      Tensor gpu_view = Tensor::strided_view(gpu_dst, {9, 6}, {12, 2});
      backend_for(Device::cpu()).copy(src.cpu, cpu_view);
      gpu().copy(src.gpu, gpu_view);
      expect_same_values(gpu_dst, cpu_dst);
      // Contiguous casts take the same kernel through a one-axis layout.
      expect_same_values(input.gpu.to(to), input.cpu.to(to));
    }
  }
}

TEST_F(CudaOpsTest, FloatsPastTheInt64RangeSaturateBeforeNarrowing) {
  Tensor source = Tensor::from_floats(std::vector<float>{5e19f, -5e19f, 1e19f, -9.3e18f}, {4});
  for (DType to : {DType::I64, DType::I32, DType::U8, DType::Bool}) {
    SCOPED_TRACE(std::string(dtype_name(to)));
    expect_same_values(source.to(kGpu).to(to), source.to(to));
  }
}

TEST_F(CudaOpsTest, CopiesBroadcastAndContiguousSources) {
  Pair row = random({1, 37}, DType::BF16);
  Pair expanded = row.map([](const Tensor& t) { return ops::expand(t, {5, 37}); });
  expect_same_values(ops::contiguous(expanded.gpu), ops::contiguous(expanded.cpu));
  Pair block = random({33, 65}, DType::F32);
  Tensor out = poisoned_like(block.cpu);
  gpu().copy(block.gpu, out);
  expect_same_values(out, block.cpu);
}

TEST_F(CudaOpsTest, OffsetsPastInt32UseWideIndexing) {
  // Two elements 2^31 bytes apart: the kernels must switch to 64-bit offsets.
  constexpr int64_t kFar = int64_t{1} << 31;
  Tensor base = Tensor::zeros({kFar + 4}, DType::U8, kGpu);
  Tensor near_values = Tensor::from_ints(std::vector<int64_t>{7, 9}, {2}, DType::I32).to(DType::U8);
  Tensor far_values = Tensor::from_ints(std::vector<int64_t>{11, 13}, {2}, DType::I32).to(DType::U8);
  Tensor near_slot = base.slice(0, 0, 2), far_slot = base.slice(0, kFar, kFar + 2);
  ops::copy_into(near_values, near_slot);
  ops::copy_into(far_values, far_slot);
  Tensor view = Tensor::strided_view(base, {2, 2}, {kFar, 1});
  EXPECT_EQ(ops::cast(view, DType::F32).to_floats(), (std::vector<float>{7, 9, 11, 13}));
  EXPECT_EQ(ops::contiguous(view).to(DType::F32).to_floats(), (std::vector<float>{7, 9, 11, 13}));
}

TEST_F(CudaOpsTest, LayoutsWithTooManyAxesAreRefused) {
  Tensor x = Tensor::zeros(Shape(9, 2), DType::F32, kGpu);
  EXPECT_THROW(ops::contiguous(x.permute({8, 7, 6, 5, 4, 3, 2, 1, 0})), Error);
}

TEST_F(CudaOpsTest, FillZeroWritesExactlyTheView) {
  Tensor cpu = Tensor::empty({6, 10}, DType::BF16);
  std::memset(cpu.raw_data(), 0xff, cpu.nbytes());
  Tensor gpu_tensor = poisoned({6, 10}, DType::BF16);
  Tensor cpu_view = cpu.slice(1, 2, 7), gpu_view = gpu_tensor.slice(1, 2, 7);
  backend_for(Device::cpu()).fill_zero(cpu_view);
  gpu().fill_zero(gpu_view);
  expect_same_values(gpu_tensor, cpu);
  Tensor whole = poisoned({3, 3}, DType::F32);
  ops::fill_zero(whole);
  EXPECT_EQ(whole.to_floats(), std::vector<float>(9, 0.0f));
}

TEST_F(CudaOpsTest, TransfersRoundTripThroughPageableAndPinnedMemory) {
  for (DType dtype : kPlainDtypes) {
    Pair x = random({17, 31}, DType::F32, -100.0f, 100.0f);
    Tensor host = x.cpu.to(dtype);
    expect_same_values(host.to(kGpu).to(Device::cpu()), host);
    Tensor pinned = Tensor::from_buffer(pinned_host_allocator().allocate(host.nbytes()), host.shape(), dtype);
    std::memcpy(pinned.raw_data(), host.raw_data(), host.nbytes());
    Tensor on_device = Tensor::empty(host.shape(), dtype, kGpu);
    gpu().transfer(pinned, on_device);
    std::memset(pinned.raw_data(), 0, pinned.nbytes());
    gpu().transfer(on_device, pinned);
    expect_same_values(pinned, host);
  }
}

// ---- elementwise ----

TEST_F(CudaOpsTest, BinaryOpsWithBroadcastStridesAndMixedDtypes) {
  const BinaryOp kOps[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div};
  for (DType dtype : kFloatDtypes) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    Pair big = random({2, 17, 96}, dtype);
    Pair odd = random({5, 77}, dtype);
    // Divisors kept away from zero.
    Pair row = random({2, 1, 96}, dtype, 0.5f, 2.0f);
    Pair column = random({2, 17, 1}, DType::F32, 0.5f, 2.0f);
    struct Case {
      Pair a, b;
    };
    const std::vector<Case> cases = {
        {big, random({2, 17, 96}, dtype, 0.5f, 2.0f)},  // contiguous, vector path
        {odd, random({5, 77}, dtype, 0.5f, 2.0f)},      // pack tail
        {big, row},                                     // broadcast rows
        {row, column},                                  // both broadcast, mixed dtypes
        {big.map([](const Tensor& t) { return t.transpose(0, 1); }),
         row.map([](const Tensor& t) { return t.transpose(0, 1); })},  // permuted
        {random({1001}, dtype).map([](const Tensor& t) { return t.slice(0, 1, 1001); }),
         random({1000}, dtype, 0.5f, 2.0f)},  // contiguous, misaligned base
    };
    for (BinaryOp op : kOps) {
      for (const Case& c : cases) {
        const Shape shape = broadcast_shapes(c.a.cpu.shape(), c.b.cpu.shape());
        Tensor expected = Tensor::empty(shape, c.a.cpu.dtype());
        backend_for(Device::cpu())
            .binary(op, ops::expand(c.a.cpu, shape), ops::expand(c.b.cpu, shape), expected);
        Tensor out = poisoned_like(expected);
        gpu().binary(op, ops::expand(c.a.gpu, shape), ops::expand(c.b.gpu, shape), out);
        expect_close(out, expected);
      }
    }
  }
}

TEST_F(CudaOpsTest, UnaryOpsScaleAndClamp) {
  const UnaryOp kOps[] = {UnaryOp::Silu, UnaryOp::GeluTanh, UnaryOp::GeluErf, UnaryOp::Sigmoid, UnaryOp::Exp};
  for (DType dtype : kFloatDtypes) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    Pair x = random({3, 41, 64}, dtype, -6.0f, 6.0f);
    for (const Pair& input : {x, x.map([](const Tensor& t) { return t.transpose(1, 2); })}) {
      for (UnaryOp op : kOps) {
        Tensor expected = Tensor::empty(input.cpu.shape(), dtype);
        backend_for(Device::cpu()).unary(op, input.cpu, expected);
        Tensor out = poisoned_like(expected);
        gpu().unary(op, input.gpu, out);
        expect_close(out, expected);
      }
      Tensor out = poisoned_like(input.cpu);
      gpu().scale(input.gpu, -0.37f, out);
      expect_close(out, ops::scale(input.cpu, -0.37f));
      out = poisoned_like(input.cpu);
      gpu().clamp(input.gpu, -1.5f, 2.25f, out);
      expect_close(out, ops::clamp(input.cpu, -1.5f, 2.25f));
    }
  }
}

TEST_F(CudaOpsTest, ClampKeepsNanAndInfinitiesMeetTheBounds) {
  const Tensor x = Tensor::from_floats(std::vector<float>{std::nanf(""), INFINITY, -INFINITY, 0.5f}, {4});
  const std::vector<float> clamped = ops::clamp(x.to(kGpu), -1.0f, 1.0f).to_floats();
  EXPECT_TRUE(std::isnan(clamped[0]));
  EXPECT_EQ(std::vector<float>(clamped.begin() + 1, clamped.end()), (std::vector<float>{1.0f, -1.0f, 0.5f}));
}

TEST_F(CudaOpsTest, ModulateAndGatedAdd) {
  for (DType dtype : kFloatDtypes) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    const Shape shape = {2, 33, 128};
    Pair x = random(shape, dtype), shift = random({2, 1, 128}, dtype);
    // One dtype throughout takes the packed broadcast path; an f32 scale the run-time-dtype path.
    for (DType scale_dtype : {dtype, DType::F32}) {
      Pair scale = random({128}, scale_dtype);
      Tensor out = poisoned(shape, dtype);
      gpu().modulate(x.gpu, ops::expand(shift.gpu, shape), ops::expand(scale.gpu, shape), out);
      expect_close(out, ops::modulate(x.cpu, shift.cpu, scale.cpu));
    }
    // All operands contiguous and of one dtype: the vector path with three inputs.
    Pair residual = random(shape, dtype), gate = random(shape, dtype);
    Tensor out = poisoned(shape, dtype);
    gpu().gated_add(residual.gpu, gate.gpu, x.gpu, out);
    expect_close(out, ops::gated_add(residual.cpu, gate.cpu, x.cpu));
    // An f32 residual stream with activations and a broadcast gate in `dtype`.
    Pair stream = random(shape, DType::F32);
    out = poisoned(shape, DType::F32);
    gpu().gated_add(stream.gpu, ops::expand(shift.gpu, shape), x.gpu, out);
    expect_close(out, ops::gated_add(stream.cpu, shift.cpu, x.cpu));
  }
}

// ---- normalization ----

TEST_F(CudaOpsTest, LayerNormAndRmsNormOverShortLongAndOddRows) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (int64_t length : {128, 3072, 77, 1}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " length " + std::to_string(length));
      // A mean well away from zero exercises the two-pass variance.
      Pair x = random({3, 19, length}, dtype, 5.0f, 9.0f);
      Pair weight = random({length}, DType::BF16), bias = random({length}, DType::F8_E4M3);
      Pair transposed = random({19, 3, length}, dtype).map([](const Tensor& t) { return t.transpose(0, 1); });
      for (const Pair& input : {x, transposed}) {
        Tensor out = poisoned_like(input.cpu);
        gpu().layer_norm(input.gpu, weight.gpu, bias.gpu, 1e-6f, out);
        expect_close(out, ops::layer_norm(input.cpu, weight.cpu, bias.cpu, 1e-6f));
        out = poisoned_like(input.cpu);
        gpu().layer_norm(input.gpu, Tensor(), Tensor(), 1e-5f, out);
        expect_close(out, ops::layer_norm(input.cpu, Tensor(), Tensor(), 1e-5f));
        out = poisoned_like(input.cpu);
        gpu().rms_norm(input.gpu, weight.gpu, 1e-6f, out);
        expect_close(out, ops::rms_norm(input.cpu, weight.cpu, 1e-6f));
        out = poisoned_like(input.cpu);
        gpu().rms_norm(input.gpu, Tensor(), 1e-6f, out);
        expect_close(out, ops::rms_norm(input.cpu, Tensor(), 1e-6f));
      }
    }
  }
}

TEST_F(CudaOpsTest, L2NormalizeSoftmaxAndVectorNorm) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    Pair image = random({2, 24, 5, 7}, dtype);
    for (int axis : {0, 1, 3}) {
      Tensor out = poisoned_like(image.cpu);
      gpu().l2_normalize(image.gpu, axis, 1e-12f, out);
      expect_close(out, ops::l2_normalize(image.cpu, axis, 1e-12f));
    }
    Pair tiny = random({4, 6}, dtype, -1e-7f, 1e-7f);  // norms below eps
    Tensor out = poisoned_like(tiny.cpu);
    gpu().l2_normalize(tiny.gpu, 1, 1e-3f, out);
    expect_close(out, ops::l2_normalize(tiny.cpu, 1, 1e-3f));
    for (const Shape& shape : {Shape{4, 7, 1000}, Shape{64, 33}, Shape{3, 4096}}) {
      Pair x = random(shape, dtype, -10.0f, 10.0f);
      out = poisoned_like(x.cpu);
      gpu().softmax(x.gpu, out);
      expect_close(out, ops::softmax(x.cpu));
      Tensor expected_norm = ops::vector_norm(x.cpu);
      out = poisoned_like(expected_norm);
      gpu().vector_norm(x.gpu, out);
      expect_close(out, expected_norm);
    }
  }
}

// ---- positions, lookups, resampling ----

TEST_F(CudaOpsTest, RopeBothLayoutsWithBroadcastAnglesAndStridedInputs) {
  constexpr int64_t kBatch = 2, kLength = 9, kHeads = 4, kDim = 64;
  const Shape table_shape = {kBatch, kLength, kDim / 2};
  for (DType dtype : {DType::F32, DType::BF16}) {
    Pair contiguous = random({kBatch, kLength, kHeads, kDim}, dtype);
    // Heads 4..7 of a fused projection, and a [B, H, L, D] tensor seen as [B, L, H, D].
    Pair fused = random({kBatch, kLength, 3 * kHeads, kDim}, dtype).map([](const Tensor& t) {
      return t.slice(2, kHeads, 2 * kHeads);
    });
    Pair heads_first =
        random({kBatch, kHeads, kLength, kDim}, dtype).map([](const Tensor& t) { return t.transpose(1, 2); });
    Pair shared_cos = random({kLength, kDim / 2}), shared_sin = random({kLength, kDim / 2});
    Pair batch_cos = random(table_shape), batch_sin = random(table_shape);
    for (ops::RopeLayout layout : {ops::RopeLayout::Interleaved, ops::RopeLayout::HalfSplit}) {
      for (const Pair& x : {contiguous, fused, heads_first}) {
        for (bool shared : {true, false}) {
          SCOPED_TRACE(std::string(dtype_name(dtype)) + (shared ? " shared angles" : " per-sample angles"));
          const Pair& cos = shared ? shared_cos : batch_cos;
          const Pair& sin = shared ? shared_sin : batch_sin;
          Tensor out = poisoned_like(x.cpu);
          gpu().rope(x.gpu, ops::expand(cos.gpu, table_shape), ops::expand(sin.gpu, table_shape), layout,
                     out);
          expect_close(out, ops::rope(x.cpu, cos.cpu, sin.cpu, layout));
        }
      }
    }
  }
}

TEST_F(CudaOpsTest, EmbeddingLooksUpAnyTableDtypeAndRejectsBadIds) {
  std::uniform_int_distribution<int64_t> id_distribution(0, 49);
  std::vector<int64_t> ids(14);
  for (int64_t& id : ids) id = id_distribution(generator_);
  for (DType id_dtype : {DType::I32, DType::I64}) {
    Tensor cpu_ids = Tensor::from_ints(ids, {2, 7}, id_dtype);
    Pair id_pair{cpu_ids, cpu_ids.to(kGpu)};
    Pair strided_ids = id_pair.map([](const Tensor& t) { return t.transpose(0, 1); });
    for (DType table_dtype : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      Pair table = random({50, 96}, table_dtype);
      for (DType out_dtype : {DType::F32, DType::BF16}) {
        for (const Pair& lookup : {id_pair, strided_ids}) {
          Tensor expected = ops::embedding(lookup.cpu, table.cpu, out_dtype);
          Tensor out = poisoned_like(expected);
          gpu().embedding(lookup.gpu, table.gpu, out);
          expect_same_values(out, expected);
        }
      }
    }
    Pair table = random({50, 8});
    for (int64_t bad : {int64_t{50}, int64_t{-1}}) {
      Tensor bad_ids = Tensor::from_ints(std::vector<int64_t>{3, bad, 4}, {3}, id_dtype).to(kGpu);
      try {
        ops::embedding(bad_ids, table.gpu, DType::F32);
        ADD_FAILURE() << "id " << bad << " was accepted";
      } catch (const Error& error) {
        test::expect_contains(error.what(), "outside the table of 50 rows");
      }
    }
  }
}

TEST_F(CudaOpsTest, UpsampleNearest2x) {
  for (DType dtype : {DType::F32, DType::BF16, DType::F8_E4M3}) {
    Pair x = random({2, 3, 5, 7}, dtype);
    Pair channels_last = random({2, 5, 7, 3}, dtype).map([](const Tensor& t) {
      return t.permute({0, 3, 1, 2});
    });
    for (const Pair& input : {x, channels_last}) {
      Tensor expected = ops::upsample_nearest2x(input.cpu);
      Tensor out = poisoned_like(expected);
      gpu().upsample_nearest2x(input.gpu, out);
      expect_same_values(out, expected);
    }
  }
}

// ---- memory and errors ----

TEST_F(CudaOpsTest, BudgetAndDeviceExhaustionRaiseOutOfMemory) {
  Allocator& allocator = allocator_for(kGpu);
  struct RestoreBudget {
    Allocator& allocator;
    ~RestoreBudget() { allocator.set_budget(std::nullopt); }
  } restore{allocator};
  allocator.set_budget(allocator.in_use() + (int64_t{1} << 20));
  EXPECT_THROW(Tensor::empty({int64_t{1} << 21}, DType::F32, kGpu), OutOfMemoryError);
  allocator.set_budget(std::nullopt);
  // Past the device's capacity: the driver refuses and the source reports it as out of memory.
  const int64_t too_much = static_cast<int64_t>(gpu().context().properties.totalGlobalMem) * 2;
  EXPECT_THROW(Tensor::empty({too_much}, DType::U8, kGpu), OutOfMemoryError);
  // The failure left no sticky error behind.
  Pair x = random({4, 4});
  expect_close(ops::add(x.gpu, x.gpu), ops::add(x.cpu, x.cpu));
}

TEST_F(CudaOpsTest, WorkspaceGrowsAndIsKept) {
  CudaContext& context = gpu().context();
  void* small = context.workspace(1000);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(context.workspace(10), small);
  ASSERT_NE(context.workspace(int64_t{3} << 20), nullptr);
  EXPECT_GE(allocator_for(kGpu).usage_by_owner().at(MemoryOwner{"cuda_workspace", -1, MemoryRole::Scratch}),
            int64_t{3} << 20);
}

TEST_F(CudaOpsTest, EmptyTensors) {
  Pair x = random({0, 5});
  EXPECT_EQ(ops::add(x.gpu, x.gpu).shape(), (Shape{0, 5}));
  EXPECT_EQ(ops::softmax(x.gpu).numel(), 0);
  EXPECT_EQ(ops::vector_norm(random({3, 0}).gpu).to_floats(), std::vector<float>(3, 0.0f));
}

// Needs no device: the error helpers only format.
TEST(CudaErrors, NameTheCallAndMapAllocationFailuresToOutOfMemory) {
  try {
    throw_cuda_error(cudaErrorInvalidValue, "cudaSomething(x)", __FILE__, __LINE__);
  } catch (const OutOfMemoryError&) {
    ADD_FAILURE() << "an invalid value is not out-of-memory";
  } catch (const Error& error) {
    const std::string message = error.what();
    test::expect_contains(message, "cudaSomething(x)");
    test::expect_contains(message, "cuda_ops_test.cpp:");
    test::expect_contains(message, "cudaErrorInvalidValue");
  }
  EXPECT_THROW(throw_cuda_error(cudaErrorMemoryAllocation, "cudaMalloc", __FILE__, __LINE__),
               OutOfMemoryError);
  EXPECT_THROW(throw_cublas_error(CUBLAS_STATUS_ALLOC_FAILED, "cublasCreate", __FILE__, __LINE__),
               OutOfMemoryError);
  EXPECT_THROW(throw_cudnn_error(CUDNN_STATUS_BAD_PARAM, "cudnnCreate", __FILE__, __LINE__), Error);
}

}  // namespace
}  // namespace canvas
