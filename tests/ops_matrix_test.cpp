// The CPU backend's matrix products, attention and convolution against straightforward double-precision
// references written here. Inputs are random, and many are strided, permuted or broadcast views so the
// kernels' layout handling is exercised.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "ops_reference.h"
#include "tensor/tensor.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using namespace ops_reference;

// ---- matrix products ----

// x [rows, in] times weight [out, in] transposed plus bias, from logical values.
std::vector<double> reference_linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  std::vector<double> xv = logical_values(x), wv = logical_values(weight);
  std::vector<double> bv = bias.defined() ? logical_values(bias) : std::vector<double>();
  const int64_t in = weight.dim(1), out_features = weight.dim(0), rows = x.numel() / in;
  std::vector<double> out;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double sum = bv.empty() ? 0.0 : bv[o];
      for (int64_t i = 0; i < in; ++i) sum += xv[r * in + i] * wv[o * in + i];
      out.push_back(sum);
    }
  }
  return out;
}

TEST(OpsLinear, F32WeightsWithStridedInputsAndWeights) {
  Tensor weight = random_tensor({10, 24}, 30), bias = random_tensor({10}, 31);
  Tensor x = random_tensor({3, 4, 24}, 32);
  expect_close(ops::linear(x, weight, bias), reference_linear(x, weight, bias));
  Tensor permuted = random_tensor({4, 3, 24}, 33).permute({1, 0, 2});  // leading axes do not flatten
  expect_close(ops::linear(permuted, weight), reference_linear(permuted, weight, {}));
  Tensor transposed_weight = random_tensor({24, 10}, 34).transpose(0, 1);
  expect_close(ops::linear(x, transposed_weight, bias), reference_linear(x, transposed_weight, bias));
  Tensor column_input = random_tensor({24, 5}, 35).transpose(0, 1);  // [5, 24] with unit row stride
  expect_close(ops::linear(column_input, weight, bias), reference_linear(column_input, weight, bias));
}

// Checks that `got` and `want`, two f32 evaluations of linear(x, weight, bias) that sum in different orders,
// differ by no more than reassociation allows. Summed in any order in f32, an output element y = b + sum_k
// x_k w_k (K + 1 terms; the products exact in f32 or rounded once) is within gamma_{K+1} * (|b| + sum_k
// |x_k w_k|) of the exact value, gamma_n = n u / (1 - n u) with u = 2^-24 (Higham, Accuracy and Stability
// of Numerical Algorithms, section 3.1). Two orders are therefore within twice that of each other.
void expect_within_reassociation_bound(const Tensor& got, const Tensor& want, const Tensor& x,
                                       const Tensor& weight, const Tensor& bias) {
  const std::vector<double> got_values = logical_values(got), want_values = logical_values(want);
  const std::vector<double> xv = logical_values(x), wv = logical_values(weight), bv = logical_values(bias);
  const int64_t in = weight.dim(1), out_features = weight.dim(0), rows = x.numel() / in;
  const double unit_roundoff = std::ldexp(1.0, -24);
  const double terms = static_cast<double>(in + 1);
  const double gamma = terms * unit_roundoff / (1 - terms * unit_roundoff);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_features; ++o) {
      double magnitude = std::fabs(bv[o]);
      for (int64_t i = 0; i < in; ++i) magnitude += std::fabs(xv[r * in + i] * wv[o * in + i]);
      const size_t element = static_cast<size_t>(r * out_features + o);
      EXPECT_LE(std::fabs(got_values[element] - want_values[element]), 2 * gamma * magnitude)
          << "row " << r << ", output feature " << o;
    }
  }
}

TEST(OpsLinear, LowPrecisionWeightsMatchWideningFirst) {
  // The CPU linear widens a low-precision weight in blocks of 256 output rows and makes one sgemm per
  // block, while an f32 weight is read in place by one sgemm. Within one block (200 rows) both make the
  // same call on the same values, so the bits are the same. 300 rows span two blocks: BLAS chooses its
  // kernels and thread splits by each call's shape (OpenBLAS's AVX-512 small-matrix kernels take the
  // 44-row call), so the sums may be ordered differently and agree within the f32 reassociation bound.
  // The column slice makes the weight rows strided.
  Tensor x = random_tensor({5, 40}, 36);
  for (DType dtype : {DType::BF16, DType::F16, DType::F8_E4M3, DType::F8_E5M2}) {
    for (int64_t out_features : {200, 300}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", " + std::to_string(out_features) + " output rows");
      Tensor weight = random_tensor({out_features, 48}, 37).to(dtype).slice(1, 4, 44);
      Tensor bias = random_tensor({out_features}, 38).to(dtype);
      Tensor low_precision = ops::linear(x, weight, bias);
      expect_close(low_precision, reference_linear(x, weight, bias));
      Tensor widened = ops::linear(x, weight.to(DType::F32), bias.to(DType::F32));
      if (out_features <= 256) {
        EXPECT_TRUE(test::bit_identical(low_precision, widened));
      } else {
        expect_within_reassociation_bound(low_precision, widened, x, weight, bias);
      }
    }
  }
}

TEST(OpsLinear, BlockQuantizedWeightIsRejectedWithItsDtype) {
  Tensor weight = Tensor::zeros({4, 64}, DType::Q8_0);
  Tensor x = random_tensor({2, 64}, 39);
  try {
    ops::linear(x, weight);
    FAIL() << "linear accepted a q8_0 weight";
  } catch (const Error& error) {
    test::expect_contains(error.what(), "q8_0");
  }
}

TEST(OpsMatmul, BatchedWithBroadcastAndTransposedOperands) {
  Tensor a = random_tensor({3, 2, 5, 4}, 40).permute({1, 0, 3, 2});  // [2, 3, 4, 5]
  Tensor b = random_tensor({6, 5}, 41).transpose(0, 1);              // [5, 6], broadcast over [2, 3]
  Tensor c = random_tensor({3, 5, 6}, 42);                           // broadcast over the first axis
  std::vector<double> av = logical_values(a), bv = logical_values(b), cv = logical_values(c);
  auto reference = [&](const std::vector<double>& rhs, bool per_inner_batch) {
    std::vector<double> out;
    for (int64_t batch = 0; batch < 6; ++batch) {
      int64_t rhs_offset = per_inner_batch ? (batch % 3) * 30 : 0;
      for (int64_t i = 0; i < 4; ++i) {
        for (int64_t j = 0; j < 6; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < 5; ++p) sum += av[batch * 20 + i * 5 + p] * rhs[rhs_offset + p * 6 + j];
          out.push_back(sum);
        }
      }
    }
    return out;
  };
  expect_close(ops::matmul(a, b), reference(bv, false));
  expect_close(ops::matmul(a, c), reference(cv, true));
}

// ---- attention ----

// Reference attention over logical values; `allowed` is [B, Lk] (empty for no padding mask).
std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const std::vector<double>& allowed, bool causal, double scale) {
  const int64_t batch = q.dim(0), heads = q.dim(1), queries = q.dim(2), dim = q.dim(3);
  const int64_t kv_heads = k.dim(1), keys = k.dim(2), value_dim = v.dim(3);
  std::vector<double> qv = logical_values(q), kv = logical_values(k), vv = logical_values(v);
  std::vector<double> out;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kv_heads);
      for (int64_t i = 0; i < queries; ++i) {
        std::vector<double> weights(keys, 0.0);
        double maximum = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          bool visible =
              (allowed.empty() || allowed[b * keys + j] != 0) && (!causal || j <= i + keys - queries);
          if (!visible) {
            weights[j] = NAN;
            continue;
          }
          double score = 0;
          for (int64_t d = 0; d < dim; ++d) {
            score +=
                qv[((b * heads + h) * queries + i) * dim + d] * kv[((b * kv_heads + g) * keys + j) * dim + d];
          }
          weights[j] = score * scale;
          maximum = std::max(maximum, weights[j]);
        }
        double sum = 0;
        for (double& w : weights) {
          w = std::isnan(w) ? 0.0 : std::exp(w - maximum);
          sum += w;
        }
        for (int64_t e = 0; e < value_dim; ++e) {
          double value = 0;
          for (int64_t j = 0; j < keys; ++j) {
            if (sum > 0) value += weights[j] / sum * vv[((b * kv_heads + g) * keys + j) * value_dim + e];
          }
          out.push_back(value);
        }
      }
    }
  }
  return out;
}

TEST(OpsAttention, GroupedQueryWithPaddingAndCausalMasks) {
  // q arrives as a [B, L, H, D] projection permuted to [B, H, L, D], as the models produce it.
  Tensor q = random_tensor({2, 5, 4, 16}, 50).permute({0, 2, 1, 3});
  Tensor k = random_tensor({2, 7, 2, 16}, 51).permute({0, 2, 1, 3});
  Tensor v = random_tensor({2, 2, 7, 8}, 52);
  const std::vector<int64_t> padding = {1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  const std::vector<double> allowed(padding.begin(), padding.end());
  ops::AttentionMask mask{Tensor::from_ints(padding, {2, 7}), false};
  const float scale = 0.25f;
  expect_close(ops::attention(q, k, v, {}, scale), reference_attention(q, k, v, {}, false, scale));
  expect_close(ops::attention(q, k, v, mask, scale), reference_attention(q, k, v, allowed, false, scale));
  mask.causal = true;
  expect_close(ops::attention(q, k, v, mask, scale), reference_attention(q, k, v, allowed, true, scale));
}

TEST(OpsAttention, LongCausalSequenceSpansQueryChunks) {
  Tensor q = random_tensor({1, 2, 300, 8}, 53);
  Tensor k = random_tensor({1, 1, 320, 8}, 54);
  Tensor v = random_tensor({1, 1, 320, 8}, 55);
  std::vector<uint8_t> flags(320, 1);
  for (int j = 0; j < 320; j += 7) flags[j] = 0;
  ops::AttentionMask mask{bool_tensor(flags, {1, 320}), true};
  expect_close(ops::attention(q, k, v, mask, 0.35f),
               reference_attention(q, k, v, std::vector<double>(flags.begin(), flags.end()), true, 0.35f));
}

TEST(OpsAttention, FullyMaskedRowsGiveZeros) {
  Tensor q = random_tensor({2, 2, 6, 4}, 56);
  Tensor k = random_tensor({2, 2, 6, 4}, 57);
  Tensor v = random_tensor({2, 2, 6, 4}, 58);
  // Sample 1 hides every key; with causal masking, sample 0's first three queries see only hidden keys.
  std::vector<float> flags = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  ops::AttentionMask mask{Tensor::from_floats(flags, {2, 6}), true};
  Tensor out = ops::attention(q, k, v, mask, 0.5f);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 6; ++i) {
      for (int64_t e = 0; e < 4; ++e) {
        EXPECT_EQ(element_at(out, {1, h, i, e}), 0.0);
        if (i < 3) {
          EXPECT_EQ(element_at(out, {0, h, i, e}), 0.0);
        }
      }
    }
  }
  expect_close(out,
               reference_attention(q, k, v, std::vector<double>(flags.begin(), flags.end()), true, 0.5f));
}

// ---- convolution ----

std::vector<double> reference_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const ops::Conv2dParams& p) {
  const int64_t images = x.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t outs = weight.dim(0), kh = weight.dim(2), kw = weight.dim(3);
  const int64_t out_h = (height + p.pad_top + p.pad_bottom - kh) / p.stride + 1;
  const int64_t out_w = (width + p.pad_left + p.pad_right - kw) / p.stride + 1;
  std::vector<double> xv = logical_values(x), wv = logical_values(weight);
  std::vector<double> bv = bias.defined() ? logical_values(bias) : std::vector<double>(outs, 0.0);
  std::vector<double> out;
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t o = 0; o < outs; ++o) {
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          double sum = bv[o];
          for (int64_t c = 0; c < channels; ++c) {
            for (int64_t i = 0; i < kh; ++i) {
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * p.stride - p.pad_top + i, iw = ow * p.stride - p.pad_left + j;
                if (ih < 0 || ih >= height || iw < 0 || iw >= width) continue;
                sum += xv[((n * channels + c) * height + ih) * width + iw] *
                       wv[((o * channels + c) * kh + i) * kw + j];
              }
            }
          }
          out.push_back(sum);
        }
      }
    }
  }
  return out;
}

TEST(OpsConv, StrideTwoAsymmetricPaddingWithLowPrecisionWeights) {
  Tensor x = random_tensor({2, 9, 8, 3}, 70).permute({0, 3, 1, 2});  // NHWC storage viewed as NCHW
  Tensor weight = random_tensor({4, 3, 3, 3}, 71), bias = random_tensor({4}, 72);
  ops::Conv2dParams params{2, 1, 0, 2, 1};
  Tensor out = ops::conv2d(x, weight, bias, params);
  EXPECT_EQ(out.shape(), (Shape{2, 4, 4, 5}));
  expect_close(out, reference_conv2d(x, weight, bias, params));
  Tensor weight_bf16 = weight.to(DType::BF16);
  expect_close(ops::conv2d(x, weight_bf16, {}, params), reference_conv2d(x, weight_bf16, {}, params));
}

TEST(OpsConv, PointwiseConvolution) {
  Tensor x = random_tensor({2, 6, 5, 7}, 73);
  Tensor weight = random_tensor({3, 6, 1, 1}, 74), bias = random_tensor({3}, 75);
  expect_close(ops::conv2d(x, weight, bias, {}), reference_conv2d(x, weight, bias, {}));
}

TEST(OpsConv, LargeImageRunsInRowBlocks) {
  // 288 patch rows x 320 x 320 pixels of columns is about 118 MB, over the 64 MB block cap.
  Tensor x = random_tensor({1, 32, 320, 320}, 76);
  Tensor weight = random_tensor({2, 32, 3, 3}, 77), bias = random_tensor({2}, 78);
  const ops::Conv2dParams params = ops::Conv2dParams::same(1);
  expect_close(ops::conv2d(x, weight, bias, params), reference_conv2d(x, weight, bias, params));
}

TEST(OpsConv, UpsampleNearest2x) {
  Tensor x = random_tensor({2, 4, 3, 5}, 79).permute({0, 2, 3, 1});  // [2, 3, 5, 4]
  Tensor out = ops::upsample_nearest2x(x);
  ASSERT_EQ(out.shape(), (Shape{2, 3, 10, 8}));
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t h = 0; h < 10; ++h) {
        for (int64_t w = 0; w < 8; ++w)
          EXPECT_EQ(element_at(out, {n, c, h, w}), element_at(x, {n, c, h / 2, w / 2}));
      }
    }
  }
}

}  // namespace
}  // namespace canvas
