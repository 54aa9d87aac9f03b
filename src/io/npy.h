// NumPy's .npy format (version 1.0), for handing tensors to other tools: `numpy.load` reads what
// write_npy writes.
#pragma once

#include <filesystem>

#include "tensor/tensor.h"

namespace canvas {

// Writes `tensor` as little-endian float32 in C order, through an AtomicFile (util/atomic_file.h): a failed
// write leaves no partial file. Any dtype and device; the values are converted to f32 on the host.
void write_npy(const std::filesystem::path& path, const Tensor& tensor);

}  // namespace canvas
