// SHA-256 (FIPS 180-4), for recording which input files a job read (their digests go into the output's
// metadata, as the files' identity).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace canvas {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  // The digest of everything updated so far; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes
};

// A digest in lower-case hexadecimal.
std::string digest_hex(const std::array<uint8_t, 32>& digest);
// Lower-case hexadecimal digest.
std::string sha256_hex(std::span<const uint8_t> bytes);
// Of a file's contents, read in pieces. Throws canvas::Error naming the file when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace canvas
