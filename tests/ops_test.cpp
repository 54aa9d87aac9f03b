// The CPU backend's ops against straightforward double-precision references written here. Inputs are
// random, and many are strided, permuted or broadcast views so the kernels' layout handling is exercised.
#include "backend/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <source_location>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "tensor/tensor.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

constexpr double kTolerance = 1e-5;

Tensor random_tensor(const Shape& shape, uint32_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& value : values) value = distribution(generator);
  return Tensor::from_floats(values, shape);
}

// One element read through the tensor's own strides and dtype, independently of the kernels.
double element_at(const Tensor& tensor, const std::vector<int64_t>& index) {
  int64_t offset = 0;
  for (size_t axis = 0; axis < index.size(); ++axis) offset += index[axis] * tensor.strides()[axis];
  const char* base = static_cast<const char*>(tensor.raw_data()) + offset * element_size(tensor.dtype());
  auto read = [&]<typename T>(T) {
    T value;
    std::memcpy(&value, base, sizeof(T));
    return value;
  };
  switch (tensor.dtype()) {
    case DType::F32:
      return read(float{});
    case DType::F16:
      return f16_to_f32(read(uint16_t{}));
    case DType::BF16:
      return bf16_to_f32(read(uint16_t{}));
    case DType::F8_E4M3:
      return f8_e4m3_to_f32(read(uint8_t{}));
    case DType::F8_E5M2:
      return f8_e5m2_to_f32(read(uint8_t{}));
    case DType::I64:
      return static_cast<double>(read(int64_t{}));
    case DType::I32:
      return read(int32_t{});
    default:
      return read(uint8_t{});
  }
}

// All elements in row-major order of the logical shape.
std::vector<double> logical_values(const Tensor& tensor) {
  std::vector<double> values;
  std::vector<int64_t> index(tensor.ndim(), 0);
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    values.push_back(element_at(tensor, index));
    for (int axis = tensor.ndim() - 1; axis >= 0; --axis) {
      if (++index[axis] < tensor.dim(axis)) break;
      index[axis] = 0;
    }
  }
  return values;
}

// The output, read through its own strides independently of the kernels, against a reference computed
// here (test::expect_close: the largest deviation over the largest reference magnitude).
void expect_close(const Tensor& got, const std::vector<double>& want, double tolerance = kTolerance,
                  std::source_location where = std::source_location::current()) {
  test::expect_close(logical_values(got), want, tolerance, where);
}

Tensor bool_tensor(const std::vector<uint8_t>& flags, const Shape& shape) {
  Tensor tensor = Tensor::empty(shape, DType::Bool);
  std::memcpy(tensor.raw_data(), flags.data(), flags.size());
  return tensor;
}

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
