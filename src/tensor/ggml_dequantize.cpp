#include "tensor/ggml_dequantize.h"

#include <array>
#include <string>

#include "util/error.h"
#include "util/no_fused_multiply_add.h"
#include "util/thread_pool.h"

namespace canvas {

namespace {

// Values in the K types' super-blocks (QK_K in ggml).
constexpr int kSuperBlock = 256;

// IQ4_NL's and IQ4_XS's non-linear code book.
constexpr std::array<int8_t, 16> kIq4Values = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};

float f16_at(const uint8_t* bytes) {
  return f16_to_f32(static_cast<uint16_t>(bytes[0] | (bytes[1] << 8)));
}

uint32_t u32_at(const uint8_t* bytes) {
  return static_cast<uint32_t>(bytes[0]) | (static_cast<uint32_t>(bytes[1]) << 8) |
         (static_cast<uint32_t>(bytes[2]) << 16) | (static_cast<uint32_t>(bytes[3]) << 24);
}

// The 32-value types keep element j in the low nibble of byte j and element j + 16 in its high nibble.
int nibble_of_32(const uint8_t* nibbles, int element) {
  return (nibbles[element % 16] >> (4 * (element / 16))) & 0xF;
}

void q4_0(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(nibble_of_32(block + 2, i) - 8);
}

void q4_1(const uint8_t* block, float* y) {
  const float d = f16_at(block), m = f16_at(block + 2);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(nibble_of_32(block + 4, i)) + m;
}

// The five-bit types add bit i of a little-endian u32 as element i's fifth bit.
int five_bits_of_32(const uint8_t* high_bits, const uint8_t* nibbles, int element) {
  return nibble_of_32(nibbles, element) | static_cast<int>(((u32_at(high_bits) >> element) & 1u) << 4);
}

void q5_0(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(five_bits_of_32(block + 2, block + 6, i) - 16);
}

void q5_1(const uint8_t* block, float* y) {
  const float d = f16_at(block), m = f16_at(block + 2);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(five_bits_of_32(block + 4, block + 8, i)) + m;
}

void q8_0(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(static_cast<int8_t>(block[2 + i]));
}

void iq4_nl(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(kIq4Values[nibble_of_32(block + 2, i)]);
}

// Q2_K and Q3_K pack four two-bit values per byte: element e of a 128-value half takes bits 2 * (e / 32)
// of byte e % 32 of that half's 32 bytes.
int two_bits(const uint8_t* packed, int element) {
  const int half = element / 128, within = element % 128;
  return (packed[half * 32 + within % 32] >> (2 * (within / 32))) & 3;
}

void q2_k(const uint8_t* block, float* y) {
  const uint8_t* scales = block;
  const uint8_t* qs = block + 16;
  const float d = f16_at(block + 80), dmin = f16_at(block + 82);
  for (int e = 0; e < kSuperBlock; ++e) {
    const uint8_t scale = scales[e / 16];
    const float dl = d * static_cast<float>(scale & 0xF);
    const float ml = dmin * static_cast<float>(scale >> 4);
    y[e] = dl * static_cast<float>(two_bits(qs, e)) - ml;
  }
}

void q3_k(const uint8_t* block, float* y) {
  const uint8_t* hmask = block;
  const uint8_t* qs = block + 32;
  const uint8_t* scales = block + 96;
  const float d = f16_at(block + 108);
  for (int e = 0; e < kSuperBlock; ++e) {
    // Sixteen six-bit scales: low nibbles from bytes 0-7, high bit pairs from bytes 8-11.
    const int s = e / 16;
    const int low = (scales[s % 8] >> (4 * (s / 8))) & 0xF;
    const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
    const float dl = d * static_cast<float>((low | (high << 4)) - 32);
    // A clear mask bit subtracts 4.
    const int mask_bit = (hmask[e % 32] >> (e / 32)) & 1;
    y[e] = dl * static_cast<float>(two_bits(qs, e) - ((mask_bit ^ 1) << 2));
  }
}

// Q4_K's and Q5_K's eight six-bit scales and mins for 32-value sub-blocks, packed in 12 bytes.
void k_scale_min(const uint8_t* packed, int sub_block, int& scale, int& min) {
  const int j = sub_block;
  if (j < 4) {
    scale = packed[j] & 63;
    min = packed[j + 4] & 63;
  } else {
    scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 2) & 0x30);
    min = (packed[j + 4] >> 4) | ((packed[j] >> 2) & 0x30);
  }
}

// Q4_K and Q5_K hold sub-blocks in pairs: the low nibbles of 32 bytes, then their high nibbles.
int k_nibble(const uint8_t* qs, int element) {
  const int sub_block = element / 32;
  return (qs[(sub_block / 2) * 32 + element % 32] >> (4 * (sub_block % 2))) & 0xF;
}

void q4_k(const uint8_t* block, float* y) {
  const float d = f16_at(block), dmin = f16_at(block + 2);
  const uint8_t* qs = block + 16;
  for (int sub_block = 0; sub_block < 8; ++sub_block) {
    int scale = 0, min = 0;
    k_scale_min(block + 4, sub_block, scale, min);
    const float dl = d * static_cast<float>(scale), ml = dmin * static_cast<float>(min);
    for (int e = sub_block * 32; e < sub_block * 32 + 32; ++e)
      y[e] = dl * static_cast<float>(k_nibble(qs, e)) - ml;
  }
}

void q5_k(const uint8_t* block, float* y) {
  const float d = f16_at(block), dmin = f16_at(block + 2);
  const uint8_t* qh = block + 16;
  const uint8_t* qs = block + 48;
  for (int sub_block = 0; sub_block < 8; ++sub_block) {
    int scale = 0, min = 0;
    k_scale_min(block + 4, sub_block, scale, min);
    const float dl = d * static_cast<float>(scale), ml = dmin * static_cast<float>(min);
    for (int e = sub_block * 32; e < sub_block * 32 + 32; ++e) {
      const int high = (qh[e % 32] >> sub_block) & 1;
      y[e] = dl * static_cast<float>(k_nibble(qs, e) | (high << 4)) - ml;
    }
  }
}

void q6_k(const uint8_t* block, float* y) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
  const float d = f16_at(block + 208);
  for (int e = 0; e < kSuperBlock; ++e) {
    // Per 128-value half: low nibbles of 64 bytes then their high nibbles; two-bit tops as in two_bits.
    const int half = e / 128, within = e % 128;
    const int low = (ql[half * 64 + within % 64] >> (4 * (within / 64))) & 0xF;
    const float dl = d * static_cast<float>(scales[e / 16]);
    y[e] = dl * static_cast<float>((low | (two_bits(qh, e) << 4)) - 32);
  }
}

void iq4_xs(const uint8_t* block, float* y) {
  const float d = f16_at(block);
  const int scales_high = block[2] | (block[3] << 8);
  const uint8_t* scales_low = block + 4;
  const uint8_t* qs = block + 8;
  for (int sub_block = 0; sub_block < 8; ++sub_block) {
    const int low = (scales_low[sub_block / 2] >> (4 * (sub_block % 2))) & 0xF;
    const int high = (scales_high >> (2 * sub_block)) & 3;
    const float dl = d * static_cast<float>((low | (high << 4)) - 32);
    for (int i = 0; i < 32; ++i)
      y[sub_block * 32 + i] = dl * static_cast<float>(kIq4Values[nibble_of_32(qs + sub_block * 16, i)]);
  }
}

using BlockDecoder = void (*)(const uint8_t* block, float* y);

BlockDecoder decoder_for(DType dtype) {
  switch (dtype) {
    case DType::Q4_0:
      return q4_0;
    case DType::Q4_1:
      return q4_1;
    case DType::Q5_0:
      return q5_0;
    case DType::Q5_1:
      return q5_1;
    case DType::Q8_0:
      return q8_0;
    case DType::Q2_K:
      return q2_k;
    case DType::Q3_K:
      return q3_k;
    case DType::Q4_K:
      return q4_k;
    case DType::Q5_K:
      return q5_k;
    case DType::Q6_K:
      return q6_k;
    case DType::IQ4_NL:
      return iq4_nl;
    case DType::IQ4_XS:
      return iq4_xs;
    default:
      return nullptr;
  }
}

}  // namespace

bool is_ggml_block_type(DType dtype) {
  return decoder_for(dtype) != nullptr;
}

void dequantize_ggml_blocks(DType dtype, const std::byte* blocks, float* dst, int64_t elements) {
  const BlockDecoder decode = decoder_for(dtype);
  check(decode != nullptr, std::string(dtype_name(dtype)) + " is not a GGML block type");
  const DTypeInfo& info = dtype_info(dtype);
  const int64_t count = storage_bytes(dtype, elements) / info.block_bytes;
  const auto* bytes = reinterpret_cast<const uint8_t*>(blocks);
  for (int64_t block = 0; block < count; ++block)
    decode(bytes + block * info.block_bytes, dst + block * info.block_elements);
}

Tensor dequantize_ggml(const Tensor& quantized) {
  const DType dtype = quantized.dtype();
  check(is_ggml_block_type(dtype),
        "dequantize_ggml: " + std::string(dtype_name(dtype)) + " is not a GGML block type");
  check(quantized.device().is_cpu() && quantized.is_contiguous(),
        "dequantize_ggml needs a contiguous host tensor");
  const DTypeInfo& info = dtype_info(dtype);
  const int64_t blocks = storage_bytes(dtype, quantized.numel()) / info.block_bytes;
  Tensor result = Tensor::empty(quantized.shape(), DType::F32);
  const auto* source = static_cast<const std::byte*>(quantized.raw_data());
  auto* target = result.data<float>();
  constexpr int64_t kBlocksPerTask = 256;
  parallel_for(blocks, kBlocksPerTask, [&](int64_t begin, int64_t end) {
    dequantize_ggml_blocks(dtype, source + begin * info.block_bytes, target + begin * info.block_elements,
                           (end - begin) * info.block_elements);
  });
  return result;
}

}  // namespace canvas
