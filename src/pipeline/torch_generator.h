// A CPU random generator that reproduces torch's, so that a seed gives the same initial noise as
// `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)` in the
// reference pipeline, including the state that carries over from one call to the next.
//
// What torch does (torch 2.x, checked bit for bit against torch 2.15):
//  - One mt19937 stream seeded with the low 32 bits of the seed (standard init_genrand).
//  - numel >= 16: every element first gets a uniform float (the low 24 bits of one draw, times 2^-24).
//    Then each block of 16 becomes 8 Box-Muller pairs: u1 = 1 - data[j], u2 = data[j + 8],
//    data[j] = sqrt(-2 log u1) cos(2 pi u2), data[j + 8] = sqrt(-2 log u1) sin(2 pi u2), in float.
//    When numel % 16 != 0, 16 fresh uniforms are drawn and the last 16 elements are recomputed from
//    them (overwriting the overlap with the last whole block).
//  - numel < 16: each element is a double-precision Box-Muller sample from two 53-bit uniforms (two
//    draws each, the first one high). Each pair yields two normals; the second is cached in the
//    generator and returned by the next scalar sample, even after intervening numel >= 16 calls.
//
// On x86-64 CPUs with AVX2, torch evaluates the float log/sin/cos with Cephes-style polynomials
// (ATen's avx_mathfun.h) whose multiply-adds its compiler fused. This class evaluates the same
// polynomials with the same fused operations, so it matches those machines exactly on any CPU. torch
// builds without AVX2 (e.g. on ARM) use libm and differ from this in the last bits of some values.
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "tensor/tensor.h"

namespace canvas {

class TorchGenerator {
 public:
  explicit TorchGenerator(uint64_t seed);

  // Writes what torch.randn((count,), generator=g, dtype=torch.float32) would return next.
  void randn(float* out, int64_t count);
  // A contiguous f32 host tensor; only its element count matters to the values drawn.
  Tensor randn(const Shape& shape);

 private:
  float uniform_float();
  double uniform_double();
  double normal_double();

  std::mt19937 engine_;
  std::optional<double> cached_normal_;
};

}  // namespace canvas
