// Widening GGML's block-quantized storage (the tensors of GGUF checkpoints) into f32.
//
// The decoders reproduce gguf-py's `gguf.quants.dequantize` bit for bit: every scale is an f16 widened
// exactly, and each product and difference rounds once in f32 in the order numpy evaluates it. They live
// in the tensor layer because weight loading (io) widens quantized GGUF tensors as it hands them out.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/tensor.h"

namespace canvas {

// Whether `dtype` is one of GGML's block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K, IQ4_NL, IQ4_XS.
bool is_ggml_block_type(DType dtype);

// Widens `elements` values (a whole number of blocks) stored as `dtype` blocks at `blocks` into `dst`.
// Throws canvas::Error for a dtype that is not a GGML block type or a partial block.
void dequantize_ggml_blocks(DType dtype, const std::byte* blocks, float* dst, int64_t elements);

// A contiguous host tensor of a GGML block type as a new f32 host tensor of the same shape, widened on
// the shared thread pool.
Tensor dequantize_ggml(const Tensor& quantized);

}  // namespace canvas
