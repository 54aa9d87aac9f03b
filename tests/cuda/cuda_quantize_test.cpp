// The CUDA linear over quantized weights (fp8 per-tensor and per-row, NF4) against the CPU linear over
// the same codes and scales. Skipped on machines without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/ops.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace canvas {
namespace {

Tensor random_host(const Shape& shape, uint32_t seed, float stddev) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> distribution(0.0f, stddev);
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& value : values) value = distribution(generator);
  return Tensor::from_floats(values, shape);
}

const char* format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::Fp8PerTensor:
      return "fp8";
    case WeightFormat::Fp8PerRow:
      return "fp8-row";
    case WeightFormat::Nf4:
      return "nf4";
  }
  return "?";
}

class CudaQuantizedLinear : public ::testing::TestWithParam<WeightFormat> {
 protected:
  void SetUp() override {
    if (register_cuda_backends() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(CudaQuantizedLinear, MatchesTheCpuLinearOverTheSameCodes) {
  const Device gpu = Device::cuda(0);
  const Tensor x = random_host({2, 40, 128}, 21, 1.0f), w = random_host({96, 128}, 22, 0.05f),
               b = random_host({96}, 23, 1.0f);
  const QuantizedWeight quantized = quantize_weight(w, GetParam());
  const Tensor codes_gpu = quantized.codes.to(gpu), scale_gpu = quantized.scale.to(gpu);

  // f32 activations: the GPU widens the codes exactly, so only GEMM rounding differs.
  const Tensor expected = ops::linear(x, quantized.codes, b, quantized.scale);
  const Tensor f32_out = ops::linear(x.to(gpu), codes_gpu, b.to(gpu), scale_gpu);
  const double f32_error = test::relative_error(f32_out, expected);
  EXPECT_LE(f32_error, 1e-4);

  // bf16 activations: the weights round to bf16 (or, for per-tensor fp8 on sm_89+, the activations are
  // quantized to e4m3 for the FP8 GEMM, the larger error the fp8 matrix test also allows).
  const Tensor x_bf16 = x.to(DType::BF16);
  const Tensor bf16_expected =
      ops::linear(x_bf16.to(DType::F32), dequantize_weight(quantized).to(DType::BF16).to(DType::F32), b);
  const Tensor bf16_out = ops::linear(x_bf16.to(gpu), codes_gpu, b.to(DType::BF16).to(gpu), scale_gpu);
  const double bf16_error = test::relative_error(bf16_out, bf16_expected);
  std::printf("[ quantize ] cuda %s linear vs cpu: f32 %.3g, bf16 %.3g\n", format_name(GetParam()), f32_error,
              bf16_error);
  EXPECT_LE(bf16_error, GetParam() == WeightFormat::Fp8PerTensor ? 6e-2 : 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaQuantizedLinear,
                         ::testing::Values(WeightFormat::Fp8PerTensor, WeightFormat::Fp8PerRow,
                                           WeightFormat::Nf4));

}  // namespace
}  // namespace canvas
