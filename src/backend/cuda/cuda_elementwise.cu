// Elementwise ops for the CUDA backend: arithmetic with broadcasting, activations, adaLN modulation and
// gated residuals. Values are computed in f32 registers and loaded/stored in the tensors' dtypes, with
// the same formulas as the CPU backend (cpu_elementwise.cpp).
#include "backend/cuda/cuda_kernel_support.cuh"

namespace canvas {

namespace {

using cuda::Pack;
using cuda::StridedLayout;

constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
constexpr float kInverseSqrtTwo = 0.7071067811865476f;

// ---- the per-element functions ----

template <BinaryOp kOp>
struct Binary {
  __device__ float operator()(float a, float b) const {
    if constexpr (kOp == BinaryOp::Add) {
      return a + b;
    } else if constexpr (kOp == BinaryOp::Sub) {
      return a - b;
    } else if constexpr (kOp == BinaryOp::Mul) {
      return a * b;
    } else {
      return a / b;
    }
  }
};

template <UnaryOp kOp>
struct Unary {
  __device__ float operator()(float v) const {
    if constexpr (kOp == UnaryOp::Silu) {
      return v / (1.0f + expf(-v));
    } else if constexpr (kOp == UnaryOp::GeluTanh) {
      return 0.5f * v * (1.0f + tanhf(kSqrtTwoOverPi * (v + 0.044715f * v * v * v)));
    } else if constexpr (kOp == UnaryOp::GeluErf) {
      return 0.5f * v * (1.0f + erff(v * kInverseSqrtTwo));
    } else if constexpr (kOp == UnaryOp::Sigmoid) {
      return 1.0f / (1.0f + expf(-v));
    } else {
      return expf(v);
    }
  }
};

struct Scale {
  float factor;
  __device__ float operator()(float v) const { return v * factor; }
};

// Comparisons rather than fminf/fmaxf, which would turn NaN into a bound: NaN stays NaN, as on the CPU.
struct Clamp {
  float min_value, max_value;
  __device__ float operator()(float v) const {
    const float raised = v < min_value ? min_value : v;
    return max_value < raised ? max_value : raised;
  }
};

struct Modulate {
  __device__ float operator()(float v, float shift, float scale) const { return v * (1.0f + scale) + shift; }
};

struct GatedAdd {
  __device__ float operator()(float residual, float gate, float v) const { return residual + gate * v; }
};

template <typename Op, int kInputs>
__device__ __forceinline__ float invoke(const Op& op, const float (&v)[kInputs]) {
  static_assert(kInputs >= 1 && kInputs <= 3, "elementwise ops take one to three inputs");
  if constexpr (kInputs == 1) {
    return op(v[0]);
  } else if constexpr (kInputs == 2) {
    return op(v[0], v[1]);
  } else {
    return op(v[0], v[1], v[2]);
  }
}

template <typename T, int kInputs>
struct TypedInputs {
  const T* data[kInputs];
};

template <int kInputs>
struct AnyInputs {
  const void* data[kInputs];
  DType dtype[kInputs];
};

// ---- kernels ----

// out = op(inputs) for contiguous, same-shape operands of one dtype with 16-byte aligned bases. Each
// thread moves whole 16-byte packs (4 f32 or 8 bf16/f16 per operand) grid-stride; the last count % pack
// elements are done one per thread.
template <typename T, int kInputs, typename Op>
__global__ void map_contiguous_kernel(TypedInputs<T, kInputs> inputs, T* __restrict__ out, int64_t count,
                                      Op op) {
  constexpr int kPack = Pack<T>::kSize;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = count / kPack;
  for (int64_t p = first; p < packs; p += step) {
    Pack<T> loaded[kInputs];
#pragma unroll
    for (int k = 0; k < kInputs; ++k) loaded[k] = reinterpret_cast<const Pack<T>*>(inputs.data[k])[p];
    Pack<T> result;
#pragma unroll
    for (int j = 0; j < kPack; ++j) {
      float values[kInputs];
#pragma unroll
      for (int k = 0; k < kInputs; ++k) values[k] = cuda::to_float(loaded[k].values[j]);
      result.values[j] = cuda::from_float<T>(invoke(op, values));
    }
    reinterpret_cast<Pack<T>*>(out)[p] = result;
  }
  for (int64_t i = packs * kPack + first; i < count; i += step) {
    float values[kInputs];
#pragma unroll
    for (int k = 0; k < kInputs; ++k) values[k] = cuda::to_float(inputs.data[k][i]);
    out[i] = cuda::from_float<T>(invoke(op, values));
  }
}

// out = op(inputs) for operands of one dtype whose innermost (collapsed) axis is a whole number of
// 16-byte packs: out and the inputs that run along that axis (unit stride) move a pack at a time, inputs
// broadcast along it (stride 0) load one value per pack. This is the adaLN pattern, x [B, L, C] with
// shift and scale [B, 1, C], and row or column broadcasts in general. One thread per pack, grid-stride;
// the offset arithmetic happens once per pack.
template <typename T, int kInputs, typename Op, typename Index>
__global__ void map_packed_kernel(StridedLayout<kInputs + 1> layout, TypedInputs<T, kInputs> inputs,
                                  T* __restrict__ out, int64_t packs, Op op) {
  constexpr int kPack = Pack<T>::kSize;
  bool runs_along[kInputs];
#pragma unroll
  for (int k = 0; k < kInputs; ++k) runs_along[k] = layout.strides[k + 1][layout.rank - 1] != 0;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += step) {
    Index offsets[kInputs + 1];
    cuda::element_offsets(layout, static_cast<Index>(p) * kPack, offsets);
    float values[kInputs][kPack];
#pragma unroll
    for (int k = 0; k < kInputs; ++k) {
      if (runs_along[k]) {
        const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(inputs.data[k] + offsets[k + 1]);
#pragma unroll
        for (int j = 0; j < kPack; ++j) values[k][j] = cuda::to_float(pack.values[j]);
      } else {
        const float value = cuda::to_float(inputs.data[k][offsets[k + 1]]);
#pragma unroll
        for (int j = 0; j < kPack; ++j) values[k][j] = value;
      }
    }
    Pack<T> result;
#pragma unroll
    for (int j = 0; j < kPack; ++j) {
      float element[kInputs];
#pragma unroll
      for (int k = 0; k < kInputs; ++k) element[k] = values[k][j];
      result.values[j] = cuda::from_float<T>(invoke(op, element));
    }
    *reinterpret_cast<Pack<T>*>(out + offsets[0]) = result;
  }
}

// out = op(inputs) for any layouts (broadcast inputs have stride 0) and any float dtypes, chosen at run
// time. Operand 0 of the layout is out, k + 1 is input k.
template <int kInputs, typename Op, typename Index>
__global__ void map_strided_kernel(StridedLayout<kInputs + 1> layout, AnyInputs<kInputs> inputs, void* out,
                                   DType out_dtype, int64_t count, Index run, Op op) {
  cuda::for_each_strided(layout, count, run, [&](const Index(&offsets)[kInputs + 1]) {
    float values[kInputs];
#pragma unroll
    for (int k = 0; k < kInputs; ++k) {
      values[k] = cuda::load_float(inputs.data[k], inputs.dtype[k], offsets[k + 1]);
    }
    cuda::store_float(out, out_dtype, offsets[0], invoke(op, values));
  });
}

// ---- host side ----

bool takes_contiguous_path(const std::array<const Tensor*, 4>& operands, int count) {
  const DType dtype = operands[0]->dtype();
  if (!cuda::is_kernel_dtype(dtype)) return false;
  for (int k = 0; k < count; ++k) {
    const Tensor& t = *operands[k];
    if (t.dtype() != dtype || t.shape() != operands[0]->shape() || !t.is_contiguous() ||
        reinterpret_cast<uintptr_t>(t.raw_data()) % 16 != 0) {
      return false;
    }
  }
  return true;
}

// Whether map_packed_kernel applies: one kernel dtype throughout, the innermost axis a whole number of
// packs, and every operand that runs along it 16-byte aligned at every pack.
template <int N>
bool takes_packed_path(const StridedLayout<N>& layout, const std::array<const Tensor*, 4>& operands) {
  const DType dtype = operands[0]->dtype();
  if (!cuda::is_kernel_dtype(dtype)) return false;
  const int64_t pack = 16 / element_size(dtype);
  const int inner = layout.rank - 1;
  if (layout.extents[inner] % pack != 0 || layout.strides[0][inner] != 1) return false;
  for (int k = 0; k < N; ++k) {
    if (operands[k]->dtype() != dtype) return false;
    if (layout.strides[k][inner] == 0) continue;
    if (layout.strides[k][inner] != 1 || reinterpret_cast<uintptr_t>(operands[k]->raw_data()) % 16 != 0) {
      return false;
    }
    for (int axis = 0; axis < inner; ++axis) {
      if (layout.strides[k][axis] % pack != 0) return false;
    }
  }
  return true;
}

template <typename T, int kInputs, typename Op, typename Index>
void launch_packed(const StridedLayout<kInputs + 1>& layout, const std::array<const Tensor*, kInputs>& inputs,
                   Tensor& out, const Op& op, cudaStream_t stream) {
  TypedInputs<T, kInputs> typed;
  for (int k = 0; k < kInputs; ++k) typed.data[k] = static_cast<const T*>(inputs[k]->raw_data());
  const int64_t packs = out.numel() / Pack<T>::kSize;
  map_packed_kernel<T, kInputs, Op, Index>
      <<<cuda::grid_blocks(packs, cuda::kThreadsPerBlock), cuda::kThreadsPerBlock, 0, stream>>>(
          layout, typed, static_cast<T*>(out.raw_data()), packs, op);
}

template <typename T, int kInputs, typename Op>
void launch_contiguous(const std::array<const Tensor*, kInputs>& inputs, Tensor& out, const Op& op,
                       cudaStream_t stream) {
  TypedInputs<T, kInputs> typed;
  for (int k = 0; k < kInputs; ++k) typed.data[k] = static_cast<const T*>(inputs[k]->raw_data());
  const int64_t count = out.numel();
  const int64_t packs = std::max<int64_t>(count / Pack<T>::kSize, 1);
  map_contiguous_kernel<T, kInputs, Op>
      <<<cuda::grid_blocks(packs, cuda::kThreadsPerBlock), cuda::kThreadsPerBlock, 0, stream>>>(
          typed, static_cast<T*>(out.raw_data()), count, op);
}

template <int kInputs, typename Op, typename Index>
void launch_strided(const StridedLayout<kInputs + 1>& layout, const AnyInputs<kInputs>& inputs, Tensor& out,
                    const Op& op, cudaStream_t stream) {
  const int64_t count = out.numel();
  const Index run = static_cast<Index>(cuda::run_length(layout));
  map_strided_kernel<kInputs, Op, Index>
      <<<cuda::grid_blocks(count / run, cuda::kThreadsPerBlock), cuda::kThreadsPerBlock, 0, stream>>>(
          layout, inputs, out.raw_data(), out.dtype(), count, run, op);
}

// out = op(inputs...) elementwise; the inputs are already broadcast to out's shape.
template <int kInputs, typename Op>
void map_elements(CudaBackend& backend, const std::array<const Tensor*, kInputs>& inputs, Tensor& out,
                  const Op& op) {
  for (const Tensor* input : inputs) {
    check(input->shape() == out.shape(), "elementwise input " + shape_str(input->shape()) +
                                             " is not broadcast to the output " + shape_str(out.shape()));
    cuda::check_on_device(*input, backend.device(), "elementwise op");
  }
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(backend.device().index);
  cudaStream_t stream = backend.context().compute_stream;
  std::array<const Tensor*, 4> operands = {&out};
  for (int k = 0; k < kInputs; ++k) operands[k + 1] = inputs[k];
  if (takes_contiguous_path(operands, kInputs + 1)) {
    cuda::dispatch_kernel_dtype(
        out.dtype(), [&](auto tag) { launch_contiguous<decltype(tag), kInputs>(inputs, out, op, stream); });
  } else {
    std::array<const Strides*, kInputs + 1> strides = {&out.strides()};
    AnyInputs<kInputs> any;
    for (int k = 0; k < kInputs; ++k) {
      strides[k + 1] = &inputs[k]->strides();
      any.data[k] = inputs[k]->raw_data();
      any.dtype[k] = inputs[k]->dtype();
    }
    const StridedLayout<kInputs + 1> layout = cuda::collapse_layout<kInputs + 1>(out.shape(), strides);
    const bool narrow = cuda::fits_int32(layout);
    if (takes_packed_path(layout, operands)) {
      cuda::dispatch_kernel_dtype(out.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if (narrow) {
          launch_packed<T, kInputs, Op, int32_t>(layout, inputs, out, op, stream);
        } else {
          launch_packed<T, kInputs, Op, int64_t>(layout, inputs, out, op, stream);
        }
      });
    } else if (narrow) {
      launch_strided<kInputs, Op, int32_t>(layout, any, out, op, stream);
    } else {
      launch_strided<kInputs, Op, int64_t>(layout, any, out, op, stream);
    }
  }
  CANVAS_CUDA_CHECK_LAUNCH();
}

void check_float_operands(std::initializer_list<const Tensor*> tensors, const char* op) {
  for (const Tensor* t : tensors) {
    check(is_float(t->dtype()) && !is_block_quantized(t->dtype()),
          std::string(op) + ": the CUDA backend computes on plain float dtypes, got " +
              std::string(dtype_name(t->dtype())));
  }
}

template <UnaryOp kOp>
void map_unary(CudaBackend& backend, const Tensor& x, Tensor& out) {
  map_elements<1>(backend, {&x}, out, Unary<kOp>{});
}

template <BinaryOp kOp>
void map_binary(CudaBackend& backend, const Tensor& a, const Tensor& b, Tensor& out) {
  map_elements<2>(backend, {&a, &b}, out, Binary<kOp>{});
}

}  // namespace

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  check_float_operands({&a, &b, &out}, "binary op");
  switch (op) {
    case BinaryOp::Add:
      return map_binary<BinaryOp::Add>(*this, a, b, out);
    case BinaryOp::Sub:
      return map_binary<BinaryOp::Sub>(*this, a, b, out);
    case BinaryOp::Mul:
      return map_binary<BinaryOp::Mul>(*this, a, b, out);
    case BinaryOp::Div:
      return map_binary<BinaryOp::Div>(*this, a, b, out);
  }
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, Tensor& out) {
  check_float_operands({&x, &out}, "unary op");
  switch (op) {
    case UnaryOp::Silu:
      return map_unary<UnaryOp::Silu>(*this, x, out);
    case UnaryOp::GeluTanh:
      return map_unary<UnaryOp::GeluTanh>(*this, x, out);
    case UnaryOp::GeluErf:
      return map_unary<UnaryOp::GeluErf>(*this, x, out);
    case UnaryOp::Sigmoid:
      return map_unary<UnaryOp::Sigmoid>(*this, x, out);
    case UnaryOp::Exp:
      return map_unary<UnaryOp::Exp>(*this, x, out);
  }
}

void CudaBackend::scale(const Tensor& x, float factor, Tensor& out) {
  check_float_operands({&x, &out}, "scale");
  map_elements<1>(*this, {&x}, out, Scale{factor});
}

void CudaBackend::clamp(const Tensor& x, float min_value, float max_value, Tensor& out) {
  check_float_operands({&x, &out}, "clamp");
  map_elements<1>(*this, {&x}, out, Clamp{min_value, max_value});
}

void CudaBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& out) {
  check_float_operands({&x, &shift, &scale, &out}, "modulate");
  map_elements<3>(*this, {&x, &shift, &scale}, out, Modulate{});
}

void CudaBackend::gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x, Tensor& out) {
  check_float_operands({&residual, &gate, &x, &out}, "gated_add");
  map_elements<3>(*this, {&residual, &gate, &x}, out, GatedAdd{});
}

}  // namespace canvas
