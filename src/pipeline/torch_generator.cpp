#include "pipeline/torch_generator.h"

#include <bit>
#include <cmath>
#include <numbers>
#include <string>

#include "util/error.h"
#include "util/no_fused_multiply_add.h"

namespace canvas {

namespace {

constexpr int64_t kBlock = 16;
constexpr int64_t kPairs = kBlock / 2;

// torch's tables hold these as float, rounded from the double literals; rounding the same literals the
// same way keeps them identical.
constexpr float kSqrtHalf = static_cast<float>(0.707106781186547524);
constexpr float kLogP0 = static_cast<float>(7.0376836292E-2);
constexpr float kLogP1 = static_cast<float>(-1.1514610310E-1);
constexpr float kLogP2 = static_cast<float>(1.1676998740E-1);
constexpr float kLogP3 = static_cast<float>(-1.2420140846E-1);
constexpr float kLogP4 = static_cast<float>(1.4249322787E-1);
constexpr float kLogP5 = static_cast<float>(-1.6668057665E-1);
constexpr float kLogP6 = static_cast<float>(2.0000714765E-1);
constexpr float kLogP7 = static_cast<float>(-2.4999993993E-1);
constexpr float kLogP8 = static_cast<float>(3.3333331174E-1);
// ln 2 split into a part exact in float and a small correction.
constexpr float kLn2Low = static_cast<float>(-2.12194440e-4);
constexpr float kLn2High = static_cast<float>(0.693359375);

constexpr float kFourOverPi = static_cast<float>(1.27323954473516);
// pi/4 split into three parts so that the argument reduction loses no precision.
constexpr float kMinusQuarterPi1 = static_cast<float>(-0.78515625);
constexpr float kMinusQuarterPi2 = static_cast<float>(-2.4187564849853515625e-4);
constexpr float kMinusQuarterPi3 = static_cast<float>(-3.77489497744594108e-8);
constexpr float kSinP0 = static_cast<float>(-1.9515295891E-4);
constexpr float kSinP1 = static_cast<float>(8.3321608736E-3);
constexpr float kSinP2 = static_cast<float>(-1.6666654611E-1);
constexpr float kCosP0 = static_cast<float>(2.443315711809948E-005);
constexpr float kCosP1 = static_cast<float>(-1.388731625493765E-003);
constexpr float kCosP2 = static_cast<float>(4.166664568298827E-002);

// 2 pi computed in double and rounded once, as torch's `2.0f * c10::pi<double>`.
constexpr float kTwoPi = static_cast<float>(2.0 * std::numbers::pi);

// Natural log for x in (0, 1] (u1 is never 0 and never subnormal): x = m * 2^e with m in [sqrt(1/2),
// sqrt(2)), then a degree-9 polynomial in m - 1.
float polynomial_log(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  float exponent = static_cast<float>(static_cast<int32_t>(bits >> 23) - 0x7f) + 1.0f;
  const float mantissa = std::bit_cast<float>((bits & ~0x7f800000u) | std::bit_cast<uint32_t>(0.5f));
  float reduced = mantissa - 1.0f;
  if (mantissa < kSqrtHalf) {
    exponent = exponent - 1.0f;
    reduced = reduced + mantissa;
  }
  const float squared = reduced * reduced;
  float poly = kLogP0;
  for (float coefficient : {kLogP1, kLogP2, kLogP3, kLogP4, kLogP5, kLogP6, kLogP7, kLogP8}) {
    poly = std::fma(poly, reduced, coefficient);
  }
  poly = poly * reduced;
  poly = std::fma(poly, squared, exponent * kLn2Low);
  poly = std::fma(-squared, 0.5f, poly);
  return std::fma(exponent, kLn2High, reduced + poly);
}

struct SineCosine {
  float sine;
  float cosine;
};

// sin and cos of a non-negative angle: reduced to [-pi/4, pi/4] around the nearest even multiple of
// pi/4, then one polynomial for each, swapped and negated by octant.
SineCosine polynomial_sincos(float angle) {
  int32_t octant = static_cast<int32_t>(angle * kFourOverPi);
  octant = (octant + 1) & ~1;
  const float octant_value = static_cast<float>(octant);
  float reduced = std::fma(octant_value, kMinusQuarterPi1, angle);
  reduced = std::fma(octant_value, kMinusQuarterPi2, reduced);
  reduced = std::fma(octant_value, kMinusQuarterPi3, reduced);
  const float squared = reduced * reduced;

  float cosine_poly = std::fma(kCosP0, squared, kCosP1);
  cosine_poly = std::fma(cosine_poly, squared, kCosP2);
  cosine_poly = cosine_poly * squared;
  cosine_poly = std::fma(cosine_poly, squared, -(squared * 0.5f));
  cosine_poly = cosine_poly + 1.0f;

  float sine_poly = std::fma(kSinP0, squared, kSinP1);
  sine_poly = std::fma(sine_poly, squared, kSinP2);
  sine_poly = sine_poly * squared;
  sine_poly = std::fma(sine_poly, reduced, reduced);

  const bool swapped = (octant & 2) != 0;
  SineCosine result{swapped ? cosine_poly : sine_poly, swapped ? sine_poly : cosine_poly};
  if ((octant & 4) != 0) result.sine = -result.sine;
  if (((octant - 2) & 4) == 0) result.cosine = -result.cosine;
  return result;
}

// torch finishes with `value * std + mean` for std 1 and mean 0, which turns a -0 into +0.
float with_unit_scale(float value) {
  return value + 0.0f;
}
double with_unit_scale(double value) {
  return value + 0.0;
}

// Turns 16 uniforms in [0, 1) into 16 normals in place.
void box_muller_block(float* data) {
  for (int64_t j = 0; j < kPairs; ++j) {
    const float u1 = 1.0f - data[j];  // (0, 1], so the log is finite
    const float u2 = data[j + kPairs];
    const float radius = std::sqrt(-2.0f * polynomial_log(u1));
    const SineCosine angle = polynomial_sincos(kTwoPi * u2);
    data[j] = with_unit_scale(radius * angle.cosine);
    data[j + kPairs] = with_unit_scale(radius * angle.sine);
  }
}

}  // namespace

TorchGenerator::TorchGenerator(uint64_t seed) : engine_(static_cast<uint32_t>(seed)) {}

float TorchGenerator::uniform_float() {
  constexpr uint32_t kMantissaMask = (1u << 24) - 1;
  return static_cast<float>(engine_() & kMantissaMask) * 0x1p-24f;
}

double TorchGenerator::uniform_double() {
  constexpr uint64_t kMantissaMask = (uint64_t{1} << 53) - 1;
  const uint64_t high = engine_();
  const uint64_t low = engine_();
  return static_cast<double>(((high << 32) | low) & kMantissaMask) * 0x1p-53;
}

double TorchGenerator::normal_double() {
  if (cached_normal_) {
    const double cached = *cached_normal_;
    cached_normal_.reset();
    return with_unit_scale(cached);
  }
  const double u1 = uniform_double();
  const double u2 = uniform_double();
  const double radius = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * std::numbers::pi * u1;
  cached_normal_ = radius * std::sin(theta);
  return with_unit_scale(radius * std::cos(theta));
}

void TorchGenerator::randn(float* out, int64_t count) {
  check(count >= 0, "randn of a negative count " + std::to_string(count));
  if (count < kBlock) {
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<float>(normal_double());
    return;
  }
  for (int64_t i = 0; i < count; ++i) out[i] = uniform_float();
  for (int64_t begin = 0; begin + kBlock <= count; begin += kBlock) box_muller_block(out + begin);
  if (count % kBlock != 0) {
    float* tail = out + count - kBlock;
    for (int64_t i = 0; i < kBlock; ++i) tail[i] = uniform_float();
    box_muller_block(tail);
  }
}

Tensor TorchGenerator::randn(const Shape& shape) {
  Tensor result = Tensor::empty(shape, DType::F32);
  randn(result.data<float>(), result.numel());
  return result;
}

}  // namespace canvas
