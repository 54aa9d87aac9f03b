// Copies, casts, zero fills and host-to-host transfers.
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"
#include "util/error.h"

namespace canvas {

namespace {

using cpu::StridedLoop;

// Bytes per task for plain memcpy/memset work.
constexpr int64_t kBytesPerTask = int64_t{1} << 20;
// Elements converted per step through the stack buffers of RunConverter.
constexpr int64_t kRunElements = 1024;

bool is_integer(DType dtype) {
  return !is_float(dtype);
}

template <typename T>
void copy_strided(const void* src, int64_t src_stride, void* dst, int64_t dst_stride, int64_t count) {
  const T* in = static_cast<const T*>(src);
  T* out = static_cast<T*>(dst);
  for (int64_t i = 0; i < count; ++i) out[i * dst_stride] = in[i * src_stride];
}

// Moves `count` elements of `element_bytes` each between strided locations; the type only sets the width.
void copy_strided_elements(const void* src, int64_t src_stride, void* dst, int64_t dst_stride, int64_t count,
                           int64_t element_bytes) {
  switch (element_bytes) {
    case 1:
      return copy_strided<uint8_t>(src, src_stride, dst, dst_stride, count);
    case 2:
      return copy_strided<uint16_t>(src, src_stride, dst, dst_stride, count);
    case 4:
      return copy_strided<uint32_t>(src, src_stride, dst, dst_stride, count);
    default:
      return copy_strided<uint64_t>(src, src_stride, dst, dst_stride, count);
  }
}

// Integer dtypes go through int64 rather than f32 so ids past 2^24 survive an i64 <-> i32 cast.
void widen_integers(DType dtype, const void* src, int64_t* dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DType::I64:
        dst[i] = static_cast<const int64_t*>(src)[i];
        break;
      case DType::I32:
        dst[i] = static_cast<const int32_t*>(src)[i];
        break;
      default:
        dst[i] = static_cast<const uint8_t*>(src)[i];
        break;
    }
  }
}

// Narrows like a C cast (wrapping), except that bool stores whether the value is nonzero.
void narrow_integers(const int64_t* src, DType dtype, void* dst, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DType::I64:
        static_cast<int64_t*>(dst)[i] = src[i];
        break;
      case DType::I32:
        static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(src[i]);
        break;
      case DType::Bool:
        static_cast<uint8_t*>(dst)[i] = src[i] != 0;
        break;
      default:
        static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(src[i]);
        break;
    }
  }
}

// Truncates toward zero as torch does. NaN becomes 0 and out-of-range values saturate at the int64 range
// before narrowing, where a plain cast would be undefined behaviour.
void narrow_floats_to_integers(const float* src, DType dtype, void* dst, int64_t* integers, int64_t count) {
  if (dtype == DType::Bool) {
    for (int64_t i = 0; i < count; ++i) static_cast<uint8_t*>(dst)[i] = src[i] != 0.0f;
    return;
  }
  constexpr float kLimit = 9.2e18f;  // just inside the int64 range
  for (int64_t i = 0; i < count; ++i) {
    float value = std::isnan(src[i]) ? 0.0f : std::clamp(src[i], -kLimit, kLimit);
    integers[i] = static_cast<int64_t>(value);
  }
  narrow_integers(integers, dtype, dst, count);
}

// Converts runs of up to kRunElements strided elements from one plain dtype to another through stack
// buffers: gather, widen to f32 (or int64 between integer types), narrow, scatter.
class RunConverter {
 public:
  RunConverter(DType src_dtype, DType dst_dtype)
      : src_dtype_(src_dtype),
        dst_dtype_(dst_dtype),
        src_bytes_(element_size(src_dtype)),
        dst_bytes_(element_size(dst_dtype)) {}

  void convert(const char* src, int64_t src_stride, char* dst, int64_t dst_stride, int64_t count) {
    if (src_dtype_ == dst_dtype_) {
      copy_strided_elements(src, src_stride, dst, dst_stride, count, src_bytes_);
      return;
    }
    const void* packed_src = src;
    if (src_stride != 1) {
      copy_strided_elements(src, src_stride, packed_src_.data(), 1, count, src_bytes_);
      packed_src = packed_src_.data();
    }
    void* packed_dst = dst_stride == 1 ? static_cast<void*>(dst) : packed_dst_.data();
    if (is_integer(src_dtype_) && is_integer(dst_dtype_)) {
      widen_integers(src_dtype_, packed_src, integers_.data(), count);
      narrow_integers(integers_.data(), dst_dtype_, packed_dst, count);
    } else {
      convert_to_f32(src_dtype_, packed_src, floats_.data(), count);
      if (is_float(dst_dtype_)) {
        convert_from_f32(floats_.data(), dst_dtype_, packed_dst, count);
      } else {
        narrow_floats_to_integers(floats_.data(), dst_dtype_, packed_dst, integers_.data(), count);
      }
    }
    if (dst_stride != 1) copy_strided_elements(packed_dst_.data(), 1, dst, dst_stride, count, dst_bytes_);
  }

 private:
  DType src_dtype_, dst_dtype_;
  int64_t src_bytes_, dst_bytes_;
  alignas(8) std::array<unsigned char, kRunElements * 8> packed_src_;
  alignas(8) std::array<unsigned char, kRunElements * 8> packed_dst_;
  std::array<float, kRunElements> floats_;
  std::array<int64_t, kRunElements> integers_;
};

}  // namespace

namespace cpu {

void parallel_copy_bytes(void* dst, const void* src, int64_t bytes) {
  parallel_for(bytes, kBytesPerTask, [&](int64_t begin, int64_t end) {
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin,
                static_cast<size_t>(end - begin));
  });
}

void copy_elements(const Tensor& src, const Tensor& dst) {
  check(src.shape() == dst.shape(),
        "copy of shape " + shape_str(src.shape()) + " into " + shape_str(dst.shape()));
  if (src.numel() == 0) return;
  if (is_block_quantized(src.dtype()) || is_block_quantized(dst.dtype())) {
    check(src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous(),
          "block-quantized tensors can only be copied whole, into the same dtype");
    parallel_copy_bytes(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    parallel_copy_bytes(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  const StridedLoop<2> loop(dst.shape(), {&src.strides(), &dst.strides()});
  const int64_t src_bytes = element_size(src.dtype()), dst_bytes = element_size(dst.dtype());
  const char* src_base = static_cast<const char*>(src.raw_data());
  char* dst_base = static_cast<char*>(dst.raw_data());
  parallel_for(src.numel(), kElementsPerTask, [&](int64_t begin, int64_t end) {
    RunConverter converter(src.dtype(), dst.dtype());
    loop.for_each_run(begin, end, [&](const StridedLoop<2>::Offsets& offsets, int64_t count) {
      const int64_t src_stride = loop.inner_stride(0), dst_stride = loop.inner_stride(1);
      for (int64_t done = 0; done < count; done += kRunElements) {
        converter.convert(src_base + (offsets[0] + done * src_stride) * src_bytes, src_stride,
                          dst_base + (offsets[1] + done * dst_stride) * dst_bytes, dst_stride,
                          std::min(kRunElements, count - done));
      }
    });
  });
}

}  // namespace cpu

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  cpu::copy_elements(src, dst);
}

void CpuBackend::fill_zero(Tensor& dst) {
  // All-zero bytes are zero in every dtype, block-quantized ones included.
  if (dst.is_contiguous()) {
    char* base = static_cast<char*>(dst.raw_data());
    parallel_for(dst.nbytes(), kBytesPerTask, [&](int64_t begin, int64_t end) {
      std::memset(base + begin, 0, static_cast<size_t>(end - begin));
    });
    return;
  }
  const int64_t element_bytes = element_size(dst.dtype());
  const StridedLoop<1> loop(dst.shape(), {&dst.strides()});
  char* base = static_cast<char*>(dst.raw_data());
  const std::array<uint64_t, 1> zero = {0};
  parallel_for(dst.numel(), cpu::kElementsPerTask, [&](int64_t begin, int64_t end) {
    loop.for_each_run(begin, end, [&](const StridedLoop<1>::Offsets& offsets, int64_t count) {
      copy_strided_elements(zero.data(), 0, base + offsets[0] * element_bytes, loop.inner_stride(0), count,
                            element_bytes);
    });
  });
}

void CpuBackend::transfer(const Tensor& src, Tensor& dst) {
  check(src.device().is_cpu() && dst.device().is_cpu(),
        "the CPU backend transfers only between host tensors, not " + src.device().str() + " -> " +
            dst.device().str());
  check(
      src.dtype() == dst.dtype() && src.shape() == dst.shape() && src.is_contiguous() && dst.is_contiguous(),
      "transfer needs contiguous tensors of one shape and dtype");
  cpu::parallel_copy_bytes(dst.raw_data(), src.raw_data(), src.nbytes());
}

}  // namespace canvas
