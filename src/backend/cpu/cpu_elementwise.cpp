// Elementwise ops: arithmetic with broadcasting, activations, adaLN modulation and gated residuals.
#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"

namespace canvas {

namespace {

using cpu::StridedLoop;

// One run of out[i] = fn(inputs[i]...). Unit strides get a loop of their own: the common case, and one the
// compiler can vectorize.
template <typename Fn, size_t N, size_t... I>
void apply_run(const Fn& fn, float* out, int64_t out_stride, const std::array<const float*, N>& inputs,
               const std::array<int64_t, N>& input_strides, int64_t count, std::index_sequence<I...>) {
  if (out_stride == 1 && ((input_strides[I] == 1) && ...)) {
    for (int64_t i = 0; i < count; ++i) out[i] = fn(inputs[I][i]...);
  } else {
    for (int64_t i = 0; i < count; ++i) out[i * out_stride] = fn(inputs[I][i * input_strides[I]]...);
  }
}

// out = fn(inputs...) elementwise, for f32 tensors of out's shape; inputs may be strided or broadcast.
template <typename Fn, typename... Inputs>
void map_elements(Tensor& out, const Fn& fn, const Inputs&... inputs) {
  constexpr size_t kInputs = sizeof...(Inputs);
  const StridedLoop<kInputs + 1> loop(out.shape(), {&out.strides(), &inputs.strides()...});
  float* out_base = out.data<float>();
  const std::array<const float*, kInputs> input_bases = {inputs.template data<float>()...};
  parallel_for(out.numel(), cpu::kElementsPerTask, [&](int64_t begin, int64_t end) {
    loop.for_each_run(begin, end,
                      [&](const typename StridedLoop<kInputs + 1>::Offsets& offsets, int64_t count) {
                        std::array<const float*, kInputs> run_inputs;
                        std::array<int64_t, kInputs> run_strides;
                        for (size_t k = 0; k < kInputs; ++k) {
                          run_inputs[k] = input_bases[k] + offsets[k + 1];
                          run_strides[k] = loop.inner_stride(k + 1);
                        }
                        apply_run(fn, out_base + offsets[0], loop.inner_stride(0), run_inputs, run_strides,
                                  count, std::make_index_sequence<kInputs>{});
                      });
  });
}

constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
constexpr float kInverseSqrtTwo = 0.7071067811865476f;

}  // namespace

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const Tensor lhs = cpu::as_f32(a), rhs = cpu::as_f32(b);
  cpu::F32Output result(out);
  switch (op) {
    case BinaryOp::Add:
      map_elements(
          result.tensor(), [](float x, float y) { return x + y; }, lhs, rhs);
      break;
    case BinaryOp::Sub:
      map_elements(
          result.tensor(), [](float x, float y) { return x - y; }, lhs, rhs);
      break;
    case BinaryOp::Mul:
      map_elements(
          result.tensor(), [](float x, float y) { return x * y; }, lhs, rhs);
      break;
    case BinaryOp::Div:
      map_elements(
          result.tensor(), [](float x, float y) { return x / y; }, lhs, rhs);
      break;
  }
  result.finish();
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  cpu::F32Output result(out);
  switch (op) {
    case UnaryOp::Silu:
      map_elements(
          result.tensor(), [](float v) { return v / (1.0f + std::exp(-v)); }, input);
      break;
    case UnaryOp::GeluTanh:
      // 0.5 x (1 + tanh(u)) == x / (1 + exp(-2u)): the same function, at the price of exp instead of tanh.
      map_elements(
          result.tensor(),
          [](float v) { return v / (1.0f + std::exp(-2.0f * kSqrtTwoOverPi * (v + 0.044715f * v * v * v))); },
          input);
      break;
    case UnaryOp::GeluErf:
      map_elements(
          result.tensor(), [](float v) { return 0.5f * v * (1.0f + std::erf(v * kInverseSqrtTwo)); }, input);
      break;
    case UnaryOp::Sigmoid:
      map_elements(
          result.tensor(), [](float v) { return 1.0f / (1.0f + std::exp(-v)); }, input);
      break;
    case UnaryOp::Exp:
      map_elements(
          result.tensor(), [](float v) { return std::exp(v); }, input);
      break;
  }
  result.finish();
}

void CpuBackend::scale(const Tensor& x, float factor, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  cpu::F32Output result(out);
  map_elements(
      result.tensor(), [factor](float v) { return v * factor; }, input);
  result.finish();
}

void CpuBackend::clamp(const Tensor& x, float min_value, float max_value, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  cpu::F32Output result(out);
  map_elements(
      result.tensor(),
      [min_value, max_value](float v) { return std::min(std::max(v, min_value), max_value); }, input);
  result.finish();
}

void CpuBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& out) {
  const Tensor input = cpu::as_f32(x), shift_f32 = cpu::as_f32(shift), scale_f32 = cpu::as_f32(scale);
  cpu::F32Output result(out);
  map_elements(
      result.tensor(),
      [](float v, float shift_value, float scale_value) { return v * (1.0f + scale_value) + shift_value; },
      input, shift_f32, scale_f32);
  result.finish();
}

void CpuBackend::gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x, Tensor& out) {
  const Tensor residual_f32 = cpu::as_f32(residual), gate_f32 = cpu::as_f32(gate), input = cpu::as_f32(x);
  cpu::F32Output result(out);
  map_elements(
      result.tensor(),
      [](float residual_value, float gate_value, float v) { return residual_value + gate_value * v; },
      residual_f32, gate_f32, input);
  result.finish();
}

}  // namespace canvas
