// Device-side helpers shared by the CUDA backend's kernels: dtype conversions that match the CPU's
// scalar conversions (tensor/dtype.h), 16-byte packs, and strided offset arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "backend/cuda/cuda_backend_support.h"

namespace canvas::cuda {

// ---- typed values: the kernel dtypes f32, bf16, f16 ----

__device__ __forceinline__ float to_float(float value) {
  return value;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 value) {
  return __bfloat162float(value);
}
__device__ __forceinline__ float to_float(__half value) {
  return __half2float(value);
}

template <typename T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float<float>(float value) {
  return value;
}
// Round to nearest even, as the CPU's f32_to_bf16 and f32_to_f16.
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float value) {
  return __float2half_rn(value);
}

// Calls fn(T{}) with T the C++ type of a kernel dtype (see is_kernel_dtype), to instantiate kernels.
template <typename Fn>
void dispatch_kernel_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32:
      return fn(float{});
    case DType::BF16:
      return fn(__nv_bfloat16{});
    default:
      return fn(__half{});
  }
}

// 16 bytes of T, the widest single load or store a thread can issue.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T values[kSize];
};

// ---- values of a dtype chosen at run time ----

__device__ __forceinline__ float fp8_to_float(uint8_t bits, __nv_fp8_interpretation_t format) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(bits, format)));
}

// Saturates to ±448 like torch's float8_e4m3fn cast; NaN becomes the positive NaN code, as on the CPU.
__device__ __forceinline__ uint8_t float_to_e4m3(float value) {
  if (isnan(value)) return 0x7f;
  return __nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3);
}

// e5m2 has infinities: they stay infinite; finite values past the range saturate as on the CPU.
__device__ __forceinline__ uint8_t float_to_e5m2(float value) {
  if (isnan(value)) return 0x7f;
  if (isinf(value)) return value > 0.0f ? 0x7c : 0xfc;
  return __nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E5M2);
}

// Host code admits only plain float dtypes here.
__device__ __forceinline__ float load_float(const void* base, DType dtype, int64_t offset) {
  switch (dtype) {
    case DType::BF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[offset]);
    case DType::F16:
      return __half2float(static_cast<const __half*>(base)[offset]);
    case DType::F8_E4M3:
      return fp8_to_float(static_cast<const uint8_t*>(base)[offset], __NV_E4M3);
    case DType::F8_E5M2:
      return fp8_to_float(static_cast<const uint8_t*>(base)[offset], __NV_E5M2);
    default:
      return static_cast<const float*>(base)[offset];
  }
}

__device__ __forceinline__ void store_float(void* base, DType dtype, int64_t offset, float value) {
  switch (dtype) {
    case DType::BF16:
      static_cast<__nv_bfloat16*>(base)[offset] = __float2bfloat16_rn(value);
      return;
    case DType::F16:
      static_cast<__half*>(base)[offset] = __float2half_rn(value);
      return;
    case DType::F8_E4M3:
      static_cast<uint8_t*>(base)[offset] = float_to_e4m3(value);
      return;
    case DType::F8_E5M2:
      static_cast<uint8_t*>(base)[offset] = float_to_e5m2(value);
      return;
    default:
      static_cast<float*>(base)[offset] = value;
      return;
  }
}

__device__ __forceinline__ bool is_integer_dtype(DType dtype) {
  return dtype == DType::I64 || dtype == DType::I32 || dtype == DType::U8 || dtype == DType::Bool;
}

__device__ __forceinline__ int64_t load_integer(const void* base, DType dtype, int64_t offset) {
  switch (dtype) {
    case DType::I64:
      return static_cast<const int64_t*>(base)[offset];
    case DType::I32:
      return static_cast<const int32_t*>(base)[offset];
    default:
      return static_cast<const uint8_t*>(base)[offset];
  }
}

// Narrows like a C cast (wrapping), except that bool stores whether the value is nonzero.
__device__ __forceinline__ void store_integer(void* base, DType dtype, int64_t offset, int64_t value) {
  switch (dtype) {
    case DType::I64:
      static_cast<int64_t*>(base)[offset] = value;
      return;
    case DType::I32:
      static_cast<int32_t*>(base)[offset] = static_cast<int32_t>(value);
      return;
    case DType::Bool:
      static_cast<uint8_t*>(base)[offset] = value != 0;
      return;
    default:
      static_cast<uint8_t*>(base)[offset] = static_cast<uint8_t>(value);
      return;
  }
}

// Truncates toward zero as torch does; NaN becomes 0 and huge values saturate just inside the int64
// range, where a plain conversion would be undefined.
__device__ __forceinline__ int64_t float_to_integer(float value) {
  constexpr float kLimit = 9.2e18f;
  if (isnan(value)) return 0;
  return static_cast<int64_t>(fminf(fmaxf(value, -kLimit), kLimit));
}

// One element from any plain dtype to any other, with the CPU's rules (cpu_copy.cpp): integers pass
// through int64, everything else through f32, and bool from a float is "nonzero".
__device__ __forceinline__ void convert_element(const void* src, DType src_dtype, int64_t src_offset,
                                                void* dst, DType dst_dtype, int64_t dst_offset) {
  if (is_integer_dtype(src_dtype)) {
    const int64_t value = load_integer(src, src_dtype, src_offset);
    if (is_integer_dtype(dst_dtype)) {
      store_integer(dst, dst_dtype, dst_offset, value);
    } else {
      store_float(dst, dst_dtype, dst_offset, static_cast<float>(value));
    }
    return;
  }
  const float value = load_float(src, src_dtype, src_offset);
  if (!is_integer_dtype(dst_dtype)) {
    store_float(dst, dst_dtype, dst_offset, value);
  } else if (dst_dtype == DType::Bool) {
    static_cast<uint8_t*>(dst)[dst_offset] = value != 0.0f;
  } else {
    store_integer(dst, dst_dtype, dst_offset, float_to_integer(value));
  }
}

// ---- strided walks ----

// Each operand's element offset of the element at row-major position `linear` of the layout.
template <int N, typename Index>
__device__ __forceinline__ void element_offsets(const StridedLayout<N>& layout, Index linear,
                                                Index (&offsets)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) offsets[k] = 0;
#pragma unroll
  for (int axis = kMaxDims - 1; axis >= 0; --axis) {
    if (axis >= layout.rank) continue;
    const Index extent = static_cast<Index>(layout.extents[axis]);
    const Index index = linear % extent;
    linear /= extent;
#pragma unroll
    for (int k = 0; k < N; ++k) offsets[k] += index * static_cast<Index>(layout.strides[k][axis]);
  }
}

// Calls fn(offsets) for every element of the layout. Each thread takes runs of `run` consecutive
// elements along the innermost axis (run divides that axis, see run_length), so the divisions of
// element_offsets happen once per run; threads step through runs grid-stride.
template <int N, typename Index, typename Fn>
__device__ __forceinline__ void for_each_strided(const StridedLayout<N>& layout, int64_t count, Index run,
                                                 Fn&& fn) {
  Index inner[N];
#pragma unroll
  for (int k = 0; k < N; ++k) inner[k] = static_cast<Index>(layout.strides[k][layout.rank - 1]);
  const int64_t runs = count / run;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < runs; r += step) {
    Index offsets[N];
    element_offsets(layout, static_cast<Index>(r) * run, offsets);
    for (Index j = 0; j < run; ++j) {
      fn(offsets);
#pragma unroll
      for (int k = 0; k < N; ++k) offsets[k] += inner[k];
    }
  }
}

}  // namespace canvas::cuda
