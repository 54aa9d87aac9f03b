// Low-precision weight storage: the fp8 and NF4 quantizers, the CPU linear over quantized weights, and
// the error each format adds to the tiny transformer golden.
#include "tensor/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "io/json_config.h"
#include "models/qwen_image_transformer.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

// Normal weights whose rows differ in magnitude by up to 16x, as real layers' output channels do.
Tensor random_weight(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> row_magnitude(-2.0f, 2.0f);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (int64_t row = 0; row < rows; ++row) {
    const float magnitude = 0.02f * std::exp2(row_magnitude(generator));
    for (int64_t col = 0; col < cols; ++col) values[row * cols + col] = magnitude * normal(generator);
  }
  return Tensor::from_floats(values, {rows, cols});
}

double round_trip_error(const Tensor& weight, WeightFormat format) {
  return test::relative_error(dequantize_weight(quantize_weight(weight, format)), weight);
}

TEST(Nf4, CodeTableMatchesBitsandbytes) {
  const std::array<float, 16>& values = nf4_code_values();
  EXPECT_EQ(values[0], -1.0f);
  EXPECT_FLOAT_EQ(values[1], -0.6961928009986877f);
  EXPECT_FLOAT_EQ(values[6], -0.09105003625154495f);
  EXPECT_EQ(values[7], 0.0f);
  EXPECT_FLOAT_EQ(values[8], 0.07958029955625534f);
  EXPECT_FLOAT_EQ(values[14], 0.7229568362236023f);
  EXPECT_EQ(values[15], 1.0f);
  for (uint8_t code = 0; code < 16; ++code) {
    if (code > 0) {
      EXPECT_LT(values[code - 1], values[code]);
    }
    EXPECT_EQ(nf4_code_of(values[code]), code);
  }
  // bitsandbytes' decision thresholds are the midpoints between neighbouring values.
  EXPECT_EQ(nf4_code_of(0.86f), 14);
  EXPECT_EQ(nf4_code_of(0.87f), 15);
  EXPECT_EQ(nf4_code_of(-0.04f), 7);
  EXPECT_EQ(nf4_code_of(-0.05f), 6);
}

// nf4_code_of's definition: walk up the table while the input lies above the midpoint to the next value.
uint8_t nf4_code_by_scan(float normalized) {
  const std::array<float, 16>& values = nf4_code_values();
  uint8_t code = 0;
  while (code < 15 && normalized > 0.5f * (values[code] + values[code + 1])) ++code;
  return code;
}

TEST(Nf4, CodeOfMatchesALinearScan) {
  const std::array<float, 16>& values = nf4_code_values();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> probes = {inf, -inf, std::numeric_limits<float>::quiet_NaN()};
  for (uint8_t code = 0; code < 16; ++code) {
    std::vector<float> anchors = {values[code]};
    if (code < 15) anchors.push_back(0.5f * (values[code] + values[code + 1]));
    for (float anchor : anchors) {
      probes.insert(probes.end(), {anchor, std::nextafter(anchor, -inf), std::nextafter(anchor, inf)});
    }
  }
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    probes.push_back(bf16_to_f32(static_cast<uint16_t>(bits)));
    probes.push_back(f16_to_f32(static_cast<uint16_t>(bits)));
  }
  std::mt19937 generator(5);
  std::uniform_real_distribution<float> normalized(-1.05f, 1.05f);
  for (int i = 0; i < 1'000'000; ++i) probes.push_back(normalized(generator));
  for (float probe : probes) ASSERT_EQ(nf4_code_of(probe), nf4_code_by_scan(probe)) << probe;
}

TEST(Nf4, FirstElementSitsInTheHighNibble) {
  std::vector<float> values(64, 0.0f);
  values[0] = 2.0f;                         // the block's absmax: code 15
  values[1] = -2.0f;                        // code 0
  values[2] = 0.16093020141124725f * 2.0f;  // code 9
  QuantizedWeight quantized = quantize_weight(Tensor::from_floats(values, {1, 64}), WeightFormat::Nf4);
  ASSERT_EQ(quantized.codes.dtype(), DType::NF4);
  ASSERT_EQ(quantized.codes.nbytes(), 32);
  const uint8_t* bytes = quantized.codes.data<uint8_t>();
  EXPECT_EQ(bytes[0], 0xf0);
  EXPECT_EQ(bytes[1], 0x97);
  EXPECT_EQ(bytes[31], 0x77);
  EXPECT_EQ(quantized.scale.to_floats(), std::vector<float>{2.0f});
  std::vector<float> restored = dequantize_weight(quantized).to_floats();
  EXPECT_EQ(restored[0], 2.0f);
  EXPECT_EQ(restored[1], -2.0f);
  EXPECT_FLOAT_EQ(restored[2], values[2]);
  EXPECT_EQ(restored[63], 0.0f);
}

TEST(Fp8, ScalesMapTheAbsmaxOnto448) {
  Tensor weight = Tensor::from_floats(std::vector<float>{1.0f, -4.0f, 0.5f, 0.25f, 0.0f, 0.0f}, {3, 2});
  QuantizedWeight per_tensor = quantize_weight(weight, WeightFormat::Fp8PerTensor);
  EXPECT_EQ(per_tensor.codes.dtype(), DType::F8_E4M3);
  EXPECT_EQ(per_tensor.scale.to_floats(), std::vector<float>{4.0f / 448.0f});
  QuantizedWeight per_row = quantize_weight(weight, WeightFormat::Fp8PerRow);
  // An all-zero row keeps scale 1 so dequantization never divides by zero.
  EXPECT_EQ(per_row.scale.to_floats(), (std::vector<float>{4.0f / 448.0f, 0.5f / 448.0f, 1.0f}));
  EXPECT_EQ(dequantize_weight(per_row).to_floats(), weight.to_floats());
}

TEST(Quantize, RoundTripErrorOnNormalWeights) {
  Tensor weight = random_weight(256, 1024, 7);
  const double fp8_tensor = round_trip_error(weight, WeightFormat::Fp8PerTensor);
  const double fp8_row = round_trip_error(weight, WeightFormat::Fp8PerRow);
  const double nf4 = round_trip_error(weight, WeightFormat::Nf4);
  std::printf("[ quantize ] round-trip relative error: fp8 per-tensor %.3g, fp8 per-row %.3g, nf4 %.3g\n",
              fp8_tensor, fp8_row, nf4);
  EXPECT_LE(fp8_tensor, 0.04);
  EXPECT_LE(fp8_row, 0.03);
  EXPECT_LE(nf4, 0.12);
  EXPECT_LE(fp8_row, fp8_tensor);
}

struct ReferenceCodes {
  std::vector<uint8_t> codes;
  std::vector<float> scale;
};

// quantize_weight's definition, one group after another over an f32 copy of the whole weight. The tiled,
// threaded implementation must match it bit for bit, so its output cannot depend on the thread count.
ReferenceCodes reference_quantize(const Tensor& weight, WeightFormat format) {
  const std::vector<float> values = weight.to_floats();
  const auto absmax_of = [&](int64_t first, int64_t count) {
    float absmax = 0.0f;
    for (int64_t i = first; i < first + count; ++i) absmax = std::max(absmax, std::fabs(values[i]));
    return absmax;
  };
  ReferenceCodes result;
  if (format == WeightFormat::Nf4) {
    result.codes.assign(values.size() / 2, 0);
    for (int64_t first = 0; first < weight.numel(); first += kNf4BlockElements) {
      const float absmax = absmax_of(first, kNf4BlockElements);
      const float inverse = absmax > 0.0f ? 1.0f / absmax : 0.0f;
      result.scale.push_back(absmax);
      for (int64_t i = first; i < first + kNf4BlockElements; ++i) {
        result.codes[i / 2] |= static_cast<uint8_t>(nf4_code_by_scan(values[i] * inverse) << (i % 2 ? 0 : 4));
      }
    }
    return result;
  }
  const int64_t groups = format == WeightFormat::Fp8PerRow ? weight.dim(0) : 1;
  const int64_t group_size = weight.numel() / groups;
  for (int64_t first = 0; first < weight.numel(); first += group_size) {
    const float absmax = absmax_of(first, group_size);
    const float scale = absmax > 0.0f ? absmax / 448.0f : 1.0f;
    result.scale.push_back(scale);
    for (int64_t i = first; i < first + group_size; ++i) {
      result.codes.push_back(f32_to_f8_e4m3(values[i] / scale));
    }
  }
  return result;
}

// 300 x 704 spans several of the quantizers' tiles, the last one partial. Besides normal weights it has an
// all-zero row, NaN, signed zeros, and magnitudes that scale into e4m3's subnormals; `with_infinity` adds
// an infinity, which turns its group's scale infinite.
Tensor awkward_weight(bool with_infinity) {
  std::vector<float> values = random_weight(300, 704, 17).to_floats();
  std::fill_n(values.begin() + 704, 704, 0.0f);
  values[3 * 704 + 1] = std::numeric_limits<float>::quiet_NaN();
  values[3 * 704 + 2] = -0.0f;
  for (int64_t col = 0; col < 704; col += 3) values[4 * 704 + col] = std::ldexp(values[4 * 704 + col], -12);
  if (with_infinity) values[5 * 704 + 9] = -std::numeric_limits<float>::infinity();
  return Tensor::from_floats(values, {300, 704});
}

TEST(Quantize, MatchesASerialReferenceBitForBit) {
  for (bool with_infinity : {false, true}) {
    const Tensor weight = awkward_weight(with_infinity);
    // bf16 and f16 sources are widened a tile at a time; a transposed one is made contiguous first.
    for (const Tensor& source :
         {weight, weight.to(DType::BF16), weight.to(DType::F16), weight.transpose(0, 1)}) {
      for (WeightFormat format : {WeightFormat::Fp8PerTensor, WeightFormat::Fp8PerRow, WeightFormat::Nf4}) {
        SCOPED_TRACE(std::string(dtype_name(source.dtype())) + (source.is_contiguous() ? "" : " transposed") +
                     (with_infinity ? " with infinity" : "") + ", format " +
                     std::to_string(static_cast<int>(format)));
        const QuantizedWeight actual = quantize_weight(source, format);
        const ReferenceCodes expected = reference_quantize(source, format);
        ASSERT_EQ(actual.codes.nbytes(), static_cast<int64_t>(expected.codes.size()));
        EXPECT_EQ(std::memcmp(actual.codes.raw_data(), expected.codes.data(), expected.codes.size()), 0);
        ASSERT_EQ(actual.scale.numel(), static_cast<int64_t>(expected.scale.size()));
        EXPECT_EQ(std::memcmp(actual.scale.raw_data(), expected.scale.data(),
                              expected.scale.size() * sizeof(float)),
                  0);
      }
    }
  }
}

TEST(Quantize, EmptyGroupsKeepScaleOne) {
  EXPECT_EQ(quantize_weight(Tensor::zeros({3, 0}, DType::BF16), WeightFormat::Fp8PerRow).scale.to_floats(),
            (std::vector<float>{1.0f, 1.0f, 1.0f}));
  EXPECT_EQ(quantize_weight(Tensor::zeros({0, 8}, DType::F32), WeightFormat::Fp8PerRow).scale.to_floats(),
            std::vector<float>{1.0f});
  EXPECT_EQ(quantize_weight(Tensor::zeros({0}, DType::F32), WeightFormat::Fp8PerTensor).scale.to_floats(),
            std::vector<float>{1.0f});
  EXPECT_EQ(quantize_weight(Tensor::zeros({0}, DType::F32), WeightFormat::Nf4).scale.numel(), 0);
}

TEST(Quantize, RejectsShapesTheFormatCannotHold) {
  EXPECT_THROW(quantize_weight(Tensor::zeros({100}, DType::F32), WeightFormat::Nf4), Error);
  EXPECT_THROW(quantize_weight(Tensor::zeros({4, 4, 4}, DType::F32), WeightFormat::Fp8PerRow), Error);
  EXPECT_EQ(weight_format_from_name("fp8-row"), WeightFormat::Fp8PerRow);
  EXPECT_THROW(weight_format_from_name("int4"), Error);
}

class QuantizedLinear : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(QuantizedLinear, MatchesLinearOverDequantizedWeights) {
  // 300 output features span two of the CPU linear's 256-row widening blocks.
  Tensor weight = random_weight(300, 128, 11);
  Tensor bias = random_weight(1, 300, 12).view({300});
  Tensor x = random_weight(15, 128, 13).view({3, 5, 128});
  QuantizedWeight quantized = quantize_weight(weight, GetParam());
  Tensor expected = ops::linear(x, dequantize_weight(quantized), bias);
  Tensor actual = ops::linear(x, quantized.codes, bias, quantized.scale);
  EXPECT_EQ(actual.shape(), (Shape{3, 5, 300}));
  EXPECT_LE(test::relative_error(actual, expected), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizedLinear,
                         ::testing::Values(WeightFormat::Fp8PerTensor, WeightFormat::Fp8PerRow,
                                           WeightFormat::Nf4));

TEST(QuantizedLinearChecks, RejectsMissingOrMismatchedScales) {
  // 4 rows of 128: 8 nf4 blocks, so neither format's scales fit the other.
  QuantizedWeight nf4 = quantize_weight(random_weight(4, 128, 3), WeightFormat::Nf4);
  QuantizedWeight fp8 = quantize_weight(random_weight(4, 128, 3), WeightFormat::Fp8PerRow);
  Tensor x = Tensor::zeros({2, 128}, DType::F32);
  EXPECT_THROW(ops::linear(x, nf4.codes), Error);
  EXPECT_THROW(ops::linear(x, nf4.codes, {}, fp8.scale), Error);
  EXPECT_THROW(ops::linear(x, fp8.codes, {}, nf4.scale), Error);
  EXPECT_THROW(ops::linear(x, random_weight(4, 128, 3), {}, fp8.scale), Error);
}

TEST(QuantizedLinearChecks, VisitCarriesTheScalesNextToTheWeight) {
  nn::Linear layer;
  layer.weight = random_weight(4, 64, 5);
  layer.quantize(WeightFormat::Fp8PerRow);
  std::vector<std::string> names;
  layer.visit("proj", [&](const std::string& name, Tensor&) { names.push_back(name); });
  EXPECT_EQ(names, (std::vector<std::string>{"proj.weight", "proj.weight_scale"}));
}

// The error each format adds to the tiny transformer (block linears quantized, the rest f32), against the
// diffusers output of the f32 model. Measured: fp8 7.3e-3, fp8 per-row 7.2e-3, nf4 2.8e-2.
class QuantizedTransformer : public ::testing::TestWithParam<std::pair<WeightFormat, double>> {};

TEST_P(QuantizedTransformer, StaysNearTheGolden) {
  const auto [format, bound] = GetParam();
  const std::string folder = "transformer/t1_base";
  auto path = test::source_path("tests/golden/" + folder);
  QwenImageTransformer2DModel model(QwenImageTransformerConfig::from_file(path / "config.json"),
                                    test::open_golden_model(folder));
  model.quantize_block_weights(format);
  WeightSource golden = test::open_golden(folder);
  nlohmann::json parameters = test::golden_json(folder);
  std::vector<ImageShape> shapes;
  for (const auto& shape : parameters.at("img_shapes").at(0)) {
    shapes.push_back({shape.at(0).get<int64_t>(), shape.at(1).get<int64_t>(), shape.at(2).get<int64_t>()});
  }
  Tensor mask =
      golden.contains("encoder_hidden_states_mask") ? golden.get("encoder_hidden_states_mask") : Tensor();
  Tensor sample = model.forward(golden.get("hidden_states"), golden.get("encoder_hidden_states"), mask,
                                golden.get("timestep"), shapes);
  const double error = test::relative_error(sample, golden.get("sample"));
  std::printf("[ quantize ] %s with %s block weights: sample relative error %.3g\n", folder.c_str(),
              format == WeightFormat::Nf4         ? "nf4"
              : format == WeightFormat::Fp8PerRow ? "fp8 per-row"
                                                  : "fp8",
              error);
  EXPECT_LE(error, bound);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizedTransformer,
                         ::testing::Values(std::pair{WeightFormat::Fp8PerTensor, 2e-2},
                                           std::pair{WeightFormat::Fp8PerRow, 2e-2},
                                           std::pair{WeightFormat::Nf4, 8e-2}));

}  // namespace
}  // namespace canvas
