// safetensors files: the header is validated completely, so every tensor a file that opens hands out lies
// inside the mapping (read here byte by byte, for AddressSanitizer to check).
#include <cstdint>

#include "fuzz_input.h"
#include "io/safetensors.h"
#include "util/error.h"

// Where the bytes read end up, so that the reads are not optimized away.
volatile uint8_t read_bytes_checksum;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = canvas::fuzz::write_input(data, size, "input.safetensors");
  try {
    const canvas::SafetensorsFile file = canvas::SafetensorsFile::open(path);
    uint8_t checksum = 0;
    for (const canvas::SafetensorsTensorInfo& info : file.tensors()) {
      const canvas::Tensor tensor = file.tensor(info.name);
      const auto* bytes = static_cast<const uint8_t*>(tensor.raw_data());
      for (int64_t i = 0; i < info.bytes(); ++i) checksum ^= bytes[i];
    }
    for (const auto& [key, value] : file.metadata())
      checksum ^= static_cast<uint8_t>(key.size() + value.size());
    read_bytes_checksum = checksum;
  } catch (const canvas::Error&) {
  }
  return 0;
}
