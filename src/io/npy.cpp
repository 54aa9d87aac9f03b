#include "io/npy.h"

#include <bit>
#include <string>

#include "util/atomic_file.h"

namespace canvas {

void write_npy(const std::filesystem::path& path, const Tensor& tensor) {
  static_assert(std::endian::native == std::endian::little, "write_npy writes the host's float bytes");
  // The shape as Python writes a tuple: "(1, 2, 3)", "(1,)", "()".
  std::string shape;
  for (int64_t extent : tensor.shape()) shape += (shape.empty() ? "" : ", ") + std::to_string(extent);
  if (tensor.ndim() == 1) shape += ",";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // The magic, version and header length take 10 bytes; the header is padded with spaces so the data
  // starts 64-byte aligned, and ends with a newline.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  const std::vector<float> values = tensor.to_floats();
  AtomicFile file(path);
  const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t header_length = static_cast<uint16_t>(header.size());
  file.append(magic, sizeof(magic));
  file.append(&header_length, sizeof(header_length));
  file.append(header.data(), header.size());
  file.append(values.data(), values.size() * sizeof(float));
  file.commit();
}

}  // namespace canvas
