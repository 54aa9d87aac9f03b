// The CUDA backend's matrix ops (linear, matmul, attention, conv2d) against the CPU backend on random
// inputs. Outputs start as NaN, so an element the GPU fails to write fails the comparison. The CPU
// reference gets the inputs rounded through the GPU's dtype, so only the GPU's arithmetic is measured.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/ops.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16Tolerance = 1e-2;

class CudaMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
  static Backend& gpu() { return backend_for(Device::cuda(0)); }
};

Tensor random_host(const Shape& shape, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> distribution(0.0f, stddev);
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& value : values) value = distribution(generator);
  return Tensor::from_floats(values, shape);
}

// The host values as the GPU sees them after storing them in `dtype`, back in f32 for the CPU.
Tensor rounded(const Tensor& host, DType dtype) {
  return host.to(dtype).to(DType::F32);
}

Tensor on_gpu(const Tensor& host, DType dtype) {
  return host.to(dtype).to(Device::cuda(0));
}

Tensor poisoned(const Shape& shape, DType dtype) {
  return on_gpu(Tensor::from_floats(std::vector<float>(static_cast<size_t>(shape_numel(shape)), NAN), shape),
                dtype);
}

// ---- linear ----

void check_linear(const Tensor& x_gpu, const Tensor& x_ref, const Tensor& w_gpu, const Tensor& w_ref,
                  const Tensor& b_gpu, const Tensor& b_ref, DType dtype, double tolerance) {
  const Tensor expected = ops::linear(x_ref, w_ref, b_ref);
  Tensor out = poisoned(expected.shape(), dtype);
  backend_for(Device::cuda(0)).linear(x_gpu, w_gpu, b_gpu, {}, out);
  test::expect_close(out, expected, tolerance);
}

TEST_F(CudaMatrixTest, LinearF32MatchesCpu) {
  const Tensor x = random_host({3, 37, 64}, 1), w = random_host({48, 64}, 2, 0.1f), b = random_host({48}, 3);
  check_linear(on_gpu(x, DType::F32), x, on_gpu(w, DType::F32), w, on_gpu(b, DType::F32), b, DType::F32,
               kF32Tolerance);
  check_linear(on_gpu(x, DType::F32), x, on_gpu(w, DType::F32), w, Tensor(), Tensor(), DType::F32,
               kF32Tolerance);
}

TEST_F(CudaMatrixTest, LinearF32WidensLowPrecisionWeights) {
  const Tensor x = random_host({2, 21, 32}, 4), w = random_host({40, 32}, 5, 0.1f), b = random_host({40}, 6);
  for (DType weight_dtype : {DType::BF16, DType::F16, DType::F8_E5M2, DType::F8_E4M3}) {
    SCOPED_TRACE(std::string(dtype_name(weight_dtype)));
    check_linear(on_gpu(x, DType::F32), x, on_gpu(w, weight_dtype), rounded(w, weight_dtype),
                 on_gpu(b, DType::BF16), rounded(b, DType::BF16), DType::F32, kF32Tolerance);
  }
}

TEST_F(CudaMatrixTest, LinearReadsStridedInputs) {
  // Rows of a slice (not one flat stride), and a transposed input (column-major rows).
  const Tensor full = random_host({3, 40, 64}, 7), w = random_host({24, 64}, 8, 0.1f),
               b = random_host({24}, 9);
  const Tensor sliced_ref = full.slice(1, 2, 39);
  const Tensor sliced_gpu = on_gpu(full, DType::F32).slice(1, 2, 39);
  check_linear(sliced_gpu, sliced_ref, on_gpu(w, DType::F32), w, on_gpu(b, DType::F32), b, DType::F32,
               kF32Tolerance);
  const Tensor columns = random_host({64, 50}, 10);
  check_linear(on_gpu(columns, DType::F32).transpose(0, 1), columns.transpose(0, 1), on_gpu(w, DType::F32), w,
               on_gpu(b, DType::F32), b, DType::F32, kF32Tolerance);
}

TEST_F(CudaMatrixTest, LinearBf16MatchesCpu) {
  const Tensor x = random_host({2, 45, 96}, 11), w = random_host({80, 96}, 12, 0.1f),
               b = random_host({80}, 13);
  const Tensor x_ref = rounded(x, DType::BF16), w_ref = rounded(w, DType::BF16);
  // A bf16 bias goes through the GEMM epilogue; an f32 bias is narrowed to bf16 first.
  check_linear(on_gpu(x, DType::BF16), x_ref, on_gpu(w, DType::BF16), w_ref, on_gpu(b, DType::BF16),
               rounded(b, DType::BF16), DType::BF16, kBf16Tolerance);
  check_linear(on_gpu(x, DType::BF16), x_ref, on_gpu(w, DType::BF16), w_ref, on_gpu(b, DType::F32), b,
               DType::BF16, kBf16Tolerance);
  check_linear(on_gpu(x, DType::F16), rounded(x, DType::F16), on_gpu(w, DType::F16), rounded(w, DType::F16),
               on_gpu(b, DType::F16), rounded(b, DType::F16), DType::F16, kBf16Tolerance);
}

TEST_F(CudaMatrixTest, LinearFp8WeightsStayCloseToBf16) {
  const Tensor x = random_host({2, 40, 128}, 14), w = random_host({96, 128}, 15, 0.05f),
               b = random_host({96}, 16);
  const Tensor x_gpu = on_gpu(x, DType::BF16), b_gpu = on_gpu(b, DType::BF16);
  const Tensor w_fp8 = on_gpu(w, DType::F8_E4M3);
  // The same e4m3 weight values widened exactly to bf16: the difference is the activation quantization.
  const Tensor w_bf16 = on_gpu(rounded(w, DType::F8_E4M3), DType::BF16);
  Tensor fp8_out = poisoned({2, 40, 96}, DType::BF16), bf16_out = poisoned({2, 40, 96}, DType::BF16);
  gpu().linear(x_gpu, w_fp8, b_gpu, {}, fp8_out);
  gpu().linear(x_gpu, w_bf16, b_gpu, {}, bf16_out);
  const double rms = test::relative_error(fp8_out, bf16_out),
               max_error = test::max_relative_error(fp8_out, bf16_out);
  cudaDeviceProp properties{};
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  std::printf("fp8 linear vs bf16 on sm_%d%d: rms relative error %.4f, max relative error %.4f\n",
              properties.major, properties.minor, rms, max_error);
  RecordProperty("fp8_rms_relative_error", std::to_string(rms));
  // Identical results would mean the bf16 fallback ran where FP8 tensor cores exist.
  if (properties.major * 10 + properties.minor >= 89) {
    EXPECT_GT(rms, 0.0) << "the FP8 GEMM did not run";
  }
  EXPECT_LE(rms, 6e-2);
  EXPECT_LE(max_error, 0.15);
}

// ---- matmul ----

void check_matmul(const Tensor& a_gpu, const Tensor& a_ref, const Tensor& b_gpu, const Tensor& b_ref,
                  DType dtype, double tolerance) {
  const Tensor expected = ops::matmul(a_ref, b_ref);
  // Broadcast the batch axes as ops::matmul does before calling the backend.
  Shape batch(expected.shape().begin(), expected.shape().end() - 2);
  Shape a_shape = batch, b_shape = batch;
  a_shape.insert(a_shape.end(), {a_gpu.dim(-2), a_gpu.dim(-1)});
  b_shape.insert(b_shape.end(), {b_gpu.dim(-2), b_gpu.dim(-1)});
  Tensor out = poisoned(expected.shape(), dtype);
  backend_for(Device::cuda(0)).matmul(ops::expand(a_gpu, a_shape), ops::expand(b_gpu, b_shape), out);
  test::expect_close(out, expected, tolerance);
}

TEST_F(CudaMatrixTest, MatmulBroadcastsBatchAxes) {
  const Tensor a = random_host({2, 3, 17, 24}, 20), b = random_host({3, 24, 9}, 21);
  check_matmul(on_gpu(a, DType::F32), a, on_gpu(b, DType::F32), b, DType::F32, kF32Tolerance);
  check_matmul(on_gpu(a, DType::BF16), rounded(a, DType::BF16), on_gpu(b, DType::BF16),
               rounded(b, DType::BF16), DType::BF16, kBf16Tolerance);
  // Broadcast mixed with real batch extents on both sides, which needs dense copies.
  const Tensor c = random_host({3, 17, 24}, 22), d = random_host({2, 1, 24, 9}, 23);
  check_matmul(on_gpu(c, DType::F32), c, on_gpu(d, DType::F32), d, DType::F32, kF32Tolerance);
}

TEST_F(CudaMatrixTest, MatmulReadsTransposedOperands) {
  const Tensor a_storage = random_host({4, 31, 13}, 24), b_storage = random_host({4, 11, 31}, 25);
  const Tensor a = a_storage.transpose(1, 2), b = b_storage.transpose(1, 2);  // [4, 13, 31] @ [4, 31, 11]
  check_matmul(on_gpu(a_storage, DType::F32).transpose(1, 2), a,
               on_gpu(b_storage, DType::F32).transpose(1, 2), b, DType::F32, kF32Tolerance);
  // Mixed dtypes: the right operand is widened to the left one's.
  check_matmul(on_gpu(a_storage, DType::F32).transpose(1, 2), a,
               on_gpu(b_storage, DType::BF16).transpose(1, 2), rounded(b, DType::BF16), DType::F32,
               kF32Tolerance);
}

// ---- attention ----

struct AttentionCase {
  int64_t batch = 1, heads = 4, kv_heads = 4, queries = 16, keys = 16, head_dim = 64;
  bool causal = false;
  std::vector<std::vector<float>> key_mask;  // [batch][keys], empty for none
  DType mask_dtype = DType::F32;
  bool sequence_major = false;  // q/k/v as [B, L, H, D] storage viewed as [B, H, L, D], as the models do
};

// Runs the case on the GPU twice (the second call takes the cached graph) and checks both runs.
// Returns the GPU output of the second run.
Tensor check_attention(const AttentionCase& c, DType dtype, double tolerance, uint32_t seed) {
  const auto make = [&](int64_t heads, int64_t length, uint32_t offset) {
    if (!c.sequence_major) return random_host({c.batch, heads, length, c.head_dim}, seed + offset);
    return random_host({c.batch, length, heads, c.head_dim}, seed + offset);
  };
  const auto heads_first = [&](const Tensor& t) { return c.sequence_major ? t.transpose(1, 2) : t; };
  const Tensor q = make(c.heads, c.queries, 0), k = make(c.kv_heads, c.keys, 1),
               v = make(c.kv_heads, c.keys, 2);
  ops::AttentionMask cpu_mask, gpu_mask;
  cpu_mask.causal = gpu_mask.causal = c.causal;
  if (!c.key_mask.empty()) {
    std::vector<float> flat;
    for (const auto& row : c.key_mask) flat.insert(flat.end(), row.begin(), row.end());
    const Tensor host_mask = Tensor::from_floats(flat, {c.batch, c.keys});
    cpu_mask.key_padding = host_mask;
    gpu_mask.key_padding = host_mask.to(c.mask_dtype).to(Device::cuda(0));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const Tensor expected = ops::attention(heads_first(rounded(q, dtype)), heads_first(rounded(k, dtype)),
                                         heads_first(rounded(v, dtype)), cpu_mask, scale);
  Tensor out;
  for (int run = 0; run < 2; ++run) {
    out = poisoned(expected.shape(), dtype);
    backend_for(Device::cuda(0))
        .attention(heads_first(on_gpu(q, dtype)), heads_first(on_gpu(k, dtype)),
                   heads_first(on_gpu(v, dtype)), gpu_mask, scale, out);
    SCOPED_TRACE("run " + std::to_string(run));
    test::expect_close(out, expected, tolerance);
  }
  return out;
}

std::vector<float> visible_keys(int64_t keys,
                                std::initializer_list<std::pair<int64_t, int64_t>> hidden_ranges) {
  std::vector<float> row(static_cast<size_t>(keys), 1.0f);
  for (const auto& [begin, end] : hidden_ranges) std::fill(row.begin() + begin, row.begin() + end, 0.0f);
  return row;
}

void expect_all_zero(const Tensor& t) {
  for (float value : t.to_floats()) ASSERT_EQ(value, 0.0f);
}

TEST_F(CudaMatrixTest, AttentionGroupedHeadsWithKeyPadding) {
  AttentionCase c;
  c.batch = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.queries = 33;
  c.keys = 47;
  // Sample 0 has holes in the middle and at the end; sample 1 hides every key, so all its rows are zeros.
  c.key_mask = {visible_keys(47, {{5, 10}, {44, 47}}), visible_keys(47, {{0, 47}})};
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    const Tensor out = check_attention(c, dtype, dtype == DType::F32 ? kF32Tolerance : kBf16Tolerance, 30);
    expect_all_zero(out.select(0, 1));
  }
}

TEST_F(CudaMatrixTest, AttentionCausalWithFewerQueriesThanKeys) {
  AttentionCase c;
  c.heads = 4;
  c.kv_heads = 2;
  c.queries = 19;
  c.keys = 50;
  c.causal = true;
  check_attention(c, DType::F32, kF32Tolerance, 40);
  check_attention(c, DType::BF16, kBf16Tolerance, 40);
  // With key padding too, which cuDNN cannot combine with this diagonal: the fallback kernel runs.
  c.batch = 2;
  c.key_mask = {visible_keys(50, {{3, 8}}), visible_keys(50, {{40, 50}})};
  check_attention(c, DType::BF16, kBf16Tolerance, 41);
}

TEST_F(CudaMatrixTest, AttentionCausalWithTextEncoderPadding) {
  AttentionCase c;
  c.batch = 3;
  c.heads = 4;
  c.kv_heads = 1;
  c.queries = c.keys = 40;
  c.head_dim = 128;
  c.causal = true;
  c.mask_dtype = DType::I64;
  // Right padding, none, and left padding: the first five queries of sample 2 see no key at all.
  c.key_mask = {visible_keys(40, {{27, 40}}), visible_keys(40, {}), visible_keys(40, {{0, 5}})};
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    const Tensor out = check_attention(c, dtype, dtype == DType::F32 ? kF32Tolerance : kBf16Tolerance, 50);
    expect_all_zero(out.select(0, 2).slice(1, 0, 5));
  }
}

TEST_F(CudaMatrixTest, AttentionOnSequenceMajorJointTokens) {
  // The transformer's layout and mask: [text, image] tokens with the text padding in the middle.
  AttentionCase c;
  c.heads = c.kv_heads = 8;
  c.queries = c.keys = 20 + 64;
  c.head_dim = 128;
  c.sequence_major = true;
  c.key_mask = {visible_keys(84, {{15, 20}})};
  check_attention(c, DType::BF16, kBf16Tolerance, 60);
  check_attention(c, DType::F16, kBf16Tolerance, 61);
  c.key_mask.clear();
  check_attention(c, DType::BF16, kBf16Tolerance, 62);
}

TEST_F(CudaMatrixTest, AttentionHeadDimOutsideCudnnTakesFallback) {
  AttentionCase c;
  c.queries = 12;
  c.keys = 29;
  c.head_dim = 36;
  c.key_mask = {visible_keys(29, {{0, 3}})};
  check_attention(c, DType::BF16, kBf16Tolerance, 70);
}

// The VAE's mid-block attention: one head 384 wide over every spatial position, in f32.
TEST_F(CudaMatrixTest, AttentionWideSingleHeadGoesThroughGemms) {
  AttentionCase c;
  c.heads = c.kv_heads = 1;
  c.queries = c.keys = 300;
  c.head_dim = 384;
  check_attention(c, DType::F32, kF32Tolerance, 90);
  check_attention(c, DType::BF16, kBf16Tolerance, 91);
}

// ---- conv2d ----

void check_conv(const Tensor& x, DType dtype, DType weight_dtype, const Tensor& w, const Tensor& b,
                const ops::Conv2dParams& params, double tolerance) {
  const Tensor expected = ops::conv2d(rounded(x, dtype), rounded(w, weight_dtype), b, params);
  Tensor out = poisoned(expected.shape(), dtype);
  backend_for(Device::cuda(0))
      .conv2d(on_gpu(x, dtype), on_gpu(w, weight_dtype), b.defined() ? on_gpu(b, DType::F32) : Tensor(),
              params, out);
  test::expect_close(out, expected, tolerance);
}

TEST_F(CudaMatrixTest, Conv2dStride2WithAsymmetricPadding) {
  const Tensor x = random_host({2, 5, 19, 23}, 80), w = random_host({7, 5, 3, 3}, 81, 0.2f),
               b = random_host({7}, 82);
  const ops::Conv2dParams downsample{2, 0, 1, 0, 1};
  check_conv(x, DType::F32, DType::F32, w, b, downsample, kF32Tolerance);
  check_conv(x, DType::BF16, DType::BF16, w, b, downsample, kBf16Tolerance);
}

TEST_F(CudaMatrixTest, Conv2dSymmetricPaddingAndWidenedWeights) {
  const Tensor x = random_host({1, 6, 16, 12}, 83), w = random_host({4, 6, 3, 3}, 84, 0.2f),
               b = random_host({4}, 85);
  check_conv(x, DType::F32, DType::F32, w, b, ops::Conv2dParams::same(1), kF32Tolerance);
  check_conv(x, DType::F32, DType::BF16, w, b, ops::Conv2dParams::same(1), kF32Tolerance);
  const Tensor pointwise = random_host({9, 6, 1, 1}, 86, 0.2f);
  check_conv(x, DType::BF16, DType::BF16, pointwise, Tensor(), ops::Conv2dParams{}, kBf16Tolerance);
}

TEST_F(CudaMatrixTest, Conv2dReadsStridedInput) {
  const Tensor full = random_host({2, 4, 14, 20}, 87), w = random_host({3, 4, 3, 3}, 88, 0.2f);
  const Tensor expected = ops::conv2d(full.slice(3, 3, 17), w, Tensor(), ops::Conv2dParams::same(1, 2));
  Tensor out = poisoned(expected.shape(), DType::F32);
  gpu().conv2d(on_gpu(full, DType::F32).slice(3, 3, 17), on_gpu(w, DType::F32), Tensor(),
               ops::Conv2dParams::same(1, 2), out);
  test::expect_close(out, expected, kF32Tolerance);
}

}  // namespace
}  // namespace canvas
