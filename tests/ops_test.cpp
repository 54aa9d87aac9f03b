// The CPU backend's ops against straightforward double-precision references written here: copies,
// elementwise ops, normalization, positions, lookups and scratch memory (matrix products, attention and
// convolution are in ops_matrix_test.cpp). Inputs are random, and many are strided, permuted or broadcast
// views so the kernels' layout handling is exercised.
#include "backend/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "ops_reference.h"
#include "tensor/tensor.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using namespace ops_reference;

// ---- copies and layout ----

TEST(OpsCopy, ContiguousOfPermutedViewFollowsStrides) {
  Tensor x = random_tensor({2, 3, 4}, 1);
  Tensor permuted = x.permute({2, 0, 1});
  Tensor dense = permuted.contiguous();
  EXPECT_TRUE(dense.is_contiguous());
  EXPECT_NE(dense.buffer(), x.buffer());
  EXPECT_EQ(logical_values(dense), logical_values(permuted));
}

TEST(OpsCopy, CastsStridedViewsBetweenFloatDtypes) {
  Tensor x = ops::scale(random_tensor({7, 5}, 2), 20.0f).transpose(0, 1);
  for (DType dtype : {DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    Tensor narrow = x.to(dtype);
    ASSERT_EQ(narrow.dtype(), dtype);
    std::vector<double> source = logical_values(x);
    std::vector<float> expected(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      float value = static_cast<float>(source[i]);
      switch (dtype) {
        case DType::F16:
          expected[i] = f16_to_f32(f32_to_f16(value));
          break;
        case DType::BF16:
          expected[i] = bf16_to_f32(f32_to_bf16(value));
          break;
        case DType::F8_E4M3:
          expected[i] = f8_e4m3_to_f32(f32_to_f8_e4m3(value));
          break;
        default:
          expected[i] = f8_e5m2_to_f32(f32_to_f8_e5m2(value));
          break;
      }
    }
    EXPECT_EQ(narrow.to(DType::F32).to_floats(), expected);
  }
}

TEST(OpsCopy, IntegerCastsAreExactAndFloatToIntegerTruncates) {
  const std::vector<int64_t> ids = {0, 1, 16777217, -5, 2147483647};
  Tensor narrowed = Tensor::from_ints(ids, {5}).to(DType::I32);
  Tensor widened = narrowed.to(DType::I64);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(narrowed.data<int32_t>()[i], ids[i]);
    EXPECT_EQ(widened.data<int64_t>()[i], ids[i]);
  }
  const std::vector<float> values = {2.9f, -2.9f, 0.0f, 0.25f};
  Tensor as_int = Tensor::from_floats(values, {4}).to(DType::I32);
  EXPECT_EQ(as_int.data<int32_t>()[0], 2);
  EXPECT_EQ(as_int.data<int32_t>()[1], -2);
  Tensor as_bool = Tensor::from_floats(values, {4}).to(DType::Bool);
  EXPECT_EQ(logical_values(as_bool), (std::vector<double>{1, 1, 0, 1}));
  Tensor flags = bool_tensor({1, 0, 1}, {3});
  EXPECT_EQ(flags.to(DType::F32).to_floats(), (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(logical_values(flags.to(DType::I64)), (std::vector<double>{1, 0, 1}));
}

TEST(OpsCopy, CopyIntoStridedViewLeavesOtherElements) {
  Tensor dst = Tensor::zeros({4, 6}, DType::F32);
  Tensor window = dst.slice(1, 1, 5).transpose(0, 1);  // [4, 4], strides [1, 6]
  Tensor src = random_tensor({4, 4}, 3).to(DType::BF16);
  ops::copy_into(src, window);
  std::vector<double> source = logical_values(src);
  for (int64_t row = 0; row < 4; ++row) {
    for (int64_t col = 0; col < 6; ++col) {
      double want = col >= 1 && col < 5 ? source[(col - 1) * 4 + row] : 0.0;
      EXPECT_EQ(element_at(dst, {row, col}), want) << row << ", " << col;
    }
  }
}

TEST(OpsCopy, BroadcastSourceAndConcat) {
  Tensor row = random_tensor({1, 5}, 4);
  Tensor expanded = ops::expand(row, {3, 5}).contiguous();
  std::vector<double> row_values = logical_values(row);
  std::vector<double> want;
  for (int i = 0; i < 3; ++i) want.insert(want.end(), row_values.begin(), row_values.end());
  EXPECT_EQ(logical_values(expanded), want);

  std::vector<Tensor> parts = {random_tensor({2, 1, 3}, 5), random_tensor({2, 2, 3}, 6).permute({0, 1, 2})};
  Tensor joined = ops::concat(parts, 1);
  ASSERT_EQ(joined.shape(), (Shape{2, 3, 3}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t j = 0; j < 3; ++j) {
      EXPECT_EQ(element_at(joined, {b, 0, j}), element_at(parts[0], {b, 0, j}));
      EXPECT_EQ(element_at(joined, {b, 2, j}), element_at(parts[1], {b, 1, j}));
    }
  }
}

TEST(OpsCopy, FillZeroOfStridedViewAndTransfer) {
  Tensor x = random_tensor({3, 4}, 7);
  std::vector<double> before = logical_values(x);
  Tensor columns = x.slice(1, 1, 3);
  ops::fill_zero(columns);
  for (int64_t row = 0; row < 3; ++row) {
    for (int64_t col = 0; col < 4; ++col) {
      EXPECT_EQ(element_at(x, {row, col}), col == 1 || col == 2 ? 0.0 : before[row * 4 + col]);
    }
  }
  Tensor copy = Tensor::empty({3, 4}, DType::F32);
  backend_for(Device::cpu()).transfer(x, copy);
  EXPECT_EQ(logical_values(copy), logical_values(x));
  Tensor wrong = Tensor::empty({3, 4}, DType::BF16);
  EXPECT_THROW(backend_for(Device::cpu()).transfer(x, wrong), Error);
}

// ---- elementwise ----

TEST(OpsElementwise, BinaryOpsOnBroadcastPermutedOperands) {
  Tensor a = random_tensor({4, 1, 3}, 10).permute({2, 1, 0});  // [3, 1, 4], strided
  Tensor b = random_tensor({5, 4}, 11, 0.5f, 2.0f);
  std::vector<double> av = logical_values(a), bv = logical_values(b);
  auto reference = [&](auto op) {
    std::vector<double> out;
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 5; ++j) {
        for (int64_t k = 0; k < 4; ++k) out.push_back(op(av[i * 4 + k], bv[j * 4 + k]));
      }
    }
    return out;
  };
  expect_close(ops::add(a, b), reference([](double x, double y) { return x + y; }));
  expect_close(ops::sub(a, b), reference([](double x, double y) { return x - y; }));
  expect_close(ops::mul(a, b), reference([](double x, double y) { return x * y; }));
  expect_close(ops::div(a, b), reference([](double x, double y) { return x / y; }));
}

TEST(OpsElementwise, ActivationsMatchDoubleReference) {
  Tensor x = random_tensor({6, 40}, 12, -6.0f, 6.0f).slice(1, 3, 37);
  std::vector<double> xv = logical_values(x);
  auto reference = [&](auto fn) {
    std::vector<double> out;
    for (double v : xv) out.push_back(fn(v));
    return out;
  };
  expect_close(ops::silu(x), reference([](double v) { return v / (1 + std::exp(-v)); }));
  expect_close(ops::gelu_tanh(x), reference([](double v) {
                 return 0.5 * v *
                        (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
               }));
  expect_close(ops::gelu_erf(x),
               reference([](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }));
  expect_close(ops::sigmoid(x), reference([](double v) { return 1 / (1 + std::exp(-v)); }));
  expect_close(ops::exp(x), reference([](double v) { return std::exp(v); }));
  expect_close(ops::scale(x, -0.375f), reference([](double v) { return v * -0.375; }));
}

TEST(OpsElementwise, ModulateAndGatedAddBroadcastPerSample) {
  Tensor x = random_tensor({2, 5, 8}, 13);
  Tensor shift = random_tensor({2, 1, 8}, 14), scale = random_tensor({2, 1, 8}, 15);
  Tensor gate = random_tensor({2, 1, 8}, 16), residual = random_tensor({2, 8, 5}, 17).transpose(1, 2);
  std::vector<double> xv = logical_values(x), sh = logical_values(shift), sc = logical_values(scale);
  std::vector<double> gv = logical_values(gate), rv = logical_values(residual);
  std::vector<double> modulated, gated;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t l = 0; l < 5; ++l) {
      for (int64_t d = 0; d < 8; ++d) {
        int64_t i = (b * 5 + l) * 8 + d, p = b * 8 + d;
        modulated.push_back(xv[i] * (1 + sc[p]) + sh[p]);
        gated.push_back(rv[i] + gv[p] * xv[i]);
      }
    }
  }
  expect_close(ops::modulate(x, shift, scale), modulated);
  expect_close(ops::gated_add(residual, gate, x), gated);
}

TEST(OpsElementwise, LowPrecisionActivationsComputeInF32AndRoundOnce) {
  Tensor a = random_tensor({3, 7}, 18).to(DType::BF16);
  Tensor b = random_tensor({7}, 19);
  Tensor sum = ops::add(a, b);
  ASSERT_EQ(sum.dtype(), DType::BF16);
  std::vector<double> av = logical_values(a), bv = logical_values(b), got = logical_values(sum);
  for (size_t i = 0; i < av.size(); ++i) {
    float exact = static_cast<float>(av[i]) + static_cast<float>(bv[i % 7]);
    EXPECT_EQ(got[i], bf16_to_f32(f32_to_bf16(exact)));
  }
}

// ---- normalization ----

TEST(OpsNorm, LayerNormWithAndWithoutAffine) {
  // An offset mean makes a one-pass variance lose digits; the kernel must not.
  Tensor x = ops::add(random_tensor({3, 7, 64}, 20), Tensor::from_floats(std::vector<float>{5.0f}, {1}));
  Tensor weight = random_tensor({64}, 21), bias = random_tensor({64}, 22);
  Tensor x_view = random_tensor({64, 3, 7}, 20).permute({1, 2, 0});
  std::vector<double> xv = logical_values(x), wv = logical_values(weight), bv = logical_values(bias);
  auto reference = [&](bool with_weight, bool with_bias, const std::vector<double>& gamma) {
    std::vector<double> out;
    for (size_t row = 0; row < xv.size() / 64; ++row) {
      double mean = 0, variance = 0;
      for (int i = 0; i < 64; ++i) mean += xv[row * 64 + i] / 64;
      for (int i = 0; i < 64; ++i) variance += (xv[row * 64 + i] - mean) * (xv[row * 64 + i] - mean) / 64;
      for (int i = 0; i < 64; ++i) {
        double value = (xv[row * 64 + i] - mean) / std::sqrt(variance + 1e-6);
        if (with_weight) value *= gamma[i];
        if (with_bias) value += bv[i];
        out.push_back(value);
      }
    }
    return out;
  };
  expect_close(ops::layer_norm(x, weight, bias, 1e-6f), reference(true, true, wv));
  expect_close(ops::layer_norm(x, {}, {}, 1e-6f), reference(false, false, wv));
  Tensor weight_bf16 = weight.to(DType::BF16);
  expect_close(ops::layer_norm(x, weight_bf16, {}, 1e-6f),
               reference(true, false, logical_values(weight_bf16)));
  EXPECT_FALSE(x_view.is_contiguous());
  xv = logical_values(x_view);
  expect_close(ops::layer_norm(x_view, weight, bias, 1e-6f), reference(true, true, wv));
}

TEST(OpsNorm, RmsNormWithF32AndLowPrecisionWeights) {
  Tensor x = random_tensor({4, 2, 48}, 23).slice(2, 8, 40);
  Tensor weight = random_tensor({32}, 24);
  std::vector<double> xv = logical_values(x);
  auto reference = [&](const std::vector<double>* gamma) {
    std::vector<double> out;
    for (size_t row = 0; row < xv.size() / 32; ++row) {
      double mean_square = 0;
      for (int i = 0; i < 32; ++i) mean_square += xv[row * 32 + i] * xv[row * 32 + i] / 32;
      for (int i = 0; i < 32; ++i) {
        out.push_back(xv[row * 32 + i] / std::sqrt(mean_square + 1e-6) * (gamma ? (*gamma)[i] : 1.0));
      }
    }
    return out;
  };
  std::vector<double> wv = logical_values(weight);
  expect_close(ops::rms_norm(x, weight, 1e-6f), reference(&wv));
  expect_close(ops::rms_norm(x, {}, 1e-6f), reference(nullptr));
  for (DType dtype : {DType::F16, DType::F8_E4M3}) {
    Tensor narrow = weight.to(dtype);
    std::vector<double> nv = logical_values(narrow);
    expect_close(ops::rms_norm(x, narrow, 1e-6f), reference(&nv));
  }
}

TEST(OpsNorm, L2NormalizeAlongChannelsOfNchwAndLastAxis) {
  Tensor x = random_tensor({2, 5, 3, 4}, 25);
  std::vector<double> xv = logical_values(x);
  std::vector<double> want(xv.size());
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t p = 0; p < 12; ++p) {
      double squares = 0;
      for (int64_t c = 0; c < 5; ++c) squares += xv[(n * 5 + c) * 12 + p] * xv[(n * 5 + c) * 12 + p];
      for (int64_t c = 0; c < 5; ++c)
        want[(n * 5 + c) * 12 + p] = xv[(n * 5 + c) * 12 + p] / std::sqrt(squares);
    }
  }
  expect_close(ops::l2_normalize(x, 1, 1e-12f), want);

  for (size_t row = 0; row < xv.size() / 4; ++row) {
    double squares = 0;
    for (int i = 0; i < 4; ++i) squares += xv[row * 4 + i] * xv[row * 4 + i];
    for (int i = 0; i < 4; ++i) want[row * 4 + i] = xv[row * 4 + i] / std::sqrt(squares);
  }
  expect_close(ops::l2_normalize(x, -1, 1e-12f), want);

  // Below eps the norm is clamped, so a zero vector stays zero instead of turning into NaN.
  Tensor zeros = Tensor::zeros({2, 3}, DType::F32);
  EXPECT_EQ(ops::l2_normalize(zeros, 1, 1e-12f).to_floats(), std::vector<float>(6, 0.0f));
}

TEST(OpsNorm, SoftmaxAndVectorNormOverLastAxis) {
  Tensor x = random_tensor({10, 3}, 26, -30.0f, 30.0f).transpose(0, 1);  // [3, 10], strided rows
  std::vector<double> xv = logical_values(x);
  std::vector<double> probabilities, norms;
  for (int row = 0; row < 3; ++row) {
    double maximum = *std::max_element(xv.begin() + row * 10, xv.begin() + row * 10 + 10), sum = 0,
           squares = 0;
    for (int i = 0; i < 10; ++i) {
      sum += std::exp(xv[row * 10 + i] - maximum);
      squares += xv[row * 10 + i] * xv[row * 10 + i];
    }
    for (int i = 0; i < 10; ++i) probabilities.push_back(std::exp(xv[row * 10 + i] - maximum) / sum);
    norms.push_back(std::sqrt(squares));
  }
  expect_close(ops::softmax(x), probabilities);
  Tensor norm = ops::vector_norm(x);
  EXPECT_EQ(norm.shape(), (Shape{3, 1}));
  expect_close(norm, norms);
}

// ---- positions ----

TEST(OpsRope, InterleavedAndHalfSplitLayouts) {
  Tensor x = random_tensor({2, 3, 5, 8}, 60).permute({0, 2, 1, 3});  // [B, L, H, D] = [2, 5, 3, 8]
  Tensor shared_cos = random_tensor({5, 4}, 61), shared_sin = random_tensor({5, 4}, 62);
  Tensor sample_cos = random_tensor({2, 5, 4}, 63), sample_sin = random_tensor({2, 5, 4}, 64);
  std::vector<double> xv = logical_values(x);
  auto reference = [&](const Tensor& cos, const Tensor& sin, ops::RopeLayout layout) {
    std::vector<double> cv = logical_values(cos), sv = logical_values(sin), out(xv.size());
    const bool per_sample = cos.ndim() == 3;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t l = 0; l < 5; ++l) {
        for (int64_t h = 0; h < 3; ++h) {
          const int64_t base = ((b * 5 + l) * 3 + h) * 8;
          for (int64_t i = 0; i < 4; ++i) {
            const int64_t angle = ((per_sample ? b * 5 : 0) + l) * 4 + i;
            const double c = cv[angle], s = sv[angle];
            const int64_t first = layout == ops::RopeLayout::Interleaved ? 2 * i : i;
            const int64_t second = layout == ops::RopeLayout::Interleaved ? 2 * i + 1 : i + 4;
            out[base + first] = xv[base + first] * c - xv[base + second] * s;
            out[base + second] = xv[base + second] * c + xv[base + first] * s;
          }
        }
      }
    }
    return out;
  };
  for (ops::RopeLayout layout : {ops::RopeLayout::Interleaved, ops::RopeLayout::HalfSplit}) {
    expect_close(ops::rope(x, shared_cos, shared_sin, layout), reference(shared_cos, shared_sin, layout));
    expect_close(ops::rope(x, sample_cos, sample_sin, layout), reference(sample_cos, sample_sin, layout));
  }
}

// ---- lookups ----

TEST(OpsEmbedding, GathersLowPrecisionRowsIntoAnyOutputDtype) {
  Tensor table = random_tensor({10, 6}, 80).to(DType::BF16);
  const std::vector<int64_t> id_values = {3, 0, 9, 3, 7, 1};
  Tensor ids = Tensor::from_ints(id_values, {2, 3}, DType::I32);
  Tensor out = ops::embedding(ids, table, DType::F32);
  ASSERT_EQ(out.shape(), (Shape{2, 3, 6}));
  Tensor out_bf16 = ops::embedding(ids, table, DType::BF16);
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t d = 0; d < 6; ++d) {
      EXPECT_EQ(element_at(out, {i / 3, i % 3, d}), element_at(table, {id_values[i], d}));
      EXPECT_EQ(element_at(out_bf16, {i / 3, i % 3, d}), element_at(table, {id_values[i], d}));
    }
  }
}

TEST(OpsEmbedding, OutOfRangeIdNamesIdAndTableSize) {
  Tensor table = random_tensor({10, 4}, 81);
  for (int64_t bad : {int64_t{12}, int64_t{-1}}) {
    Tensor ids = Tensor::from_ints(std::vector<int64_t>{1, bad}, {2});
    try {
      ops::embedding(ids, table, DType::F32);
      FAIL() << "id " << bad << " was accepted";
    } catch (const Error& error) {
      std::string message = error.what();
      test::expect_contains(message, "id " + std::to_string(bad));
      test::expect_contains(message, "10 rows");
    }
  }
}

// ---- memory and determinism ----

TEST(OpsScratch, ScratchIsChargedToTheCallerWithTheScratchRole) {
  Tensor x = random_tensor({3, 16}, 82);
  Tensor weight = random_tensor({8, 16}, 83).to(DType::BF16);
  Allocator& allocator = allocator_for(Device::cpu());
  std::vector<MemoryOwner> owners;
  allocator.set_listener([&](const AllocationEvent& event) {
    if (event.bytes > 0) owners.push_back(event.owner);
  });
  {
    OwnerScope scope({"ops_test", 7, MemoryRole::Activations});
    ops::linear(x, weight);
  }
  allocator.set_listener({});
  bool saw_scratch = false, saw_output = false;
  for (const MemoryOwner& owner : owners) {
    EXPECT_EQ(owner.component, "ops_test");
    EXPECT_EQ(owner.block, 7);
    saw_scratch |= owner.role == MemoryRole::Scratch;
    saw_output |= owner.role == MemoryRole::Activations;
  }
  EXPECT_TRUE(saw_scratch);
  EXPECT_TRUE(saw_output);
}

TEST(OpsDeterminism, RepeatedRunsAreBitIdentical) {
  Tensor x = random_tensor({64, 96}, 90);
  Tensor weight = random_tensor({300, 96}, 91).to(DType::BF16);
  Tensor q = random_tensor({1, 4, 200, 32}, 92), k = random_tensor({1, 2, 200, 32}, 93);
  Tensor image = random_tensor({1, 8, 40, 40}, 94), kernel = random_tensor({8, 8, 3, 3}, 95);
  ops::AttentionMask causal{{}, true};
  auto run_all = [&] {
    return std::vector<Tensor>{ops::linear(x, weight), ops::attention(q, k, k, causal, 0.2f),
                               ops::layer_norm(x, {}, {}, 1e-6f),
                               ops::conv2d(image, kernel, {}, ops::Conv2dParams::same(1))};
  };
  std::vector<Tensor> first = run_all(), second = run_all();
  for (size_t i = 0; i < first.size(); ++i)
    EXPECT_TRUE(test::bit_identical(first[i], second[i])) << "op " << i;
}

}  // namespace
}  // namespace canvas
