// A read-only memory mapping of a whole file. Checkpoints are mapped rather than read so that tensors
// can point straight into the page cache: nothing is copied until a backend uploads or converts it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace canvas {

class MappedFile {
 public:
  // Shared ownership: every tensor viewing the mapping holds it alive. Throws canvas::Error naming the
  // file and the system's reason when it cannot be opened, is not a regular file, or cannot be mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // nullptr for an empty file, which cannot be mapped.
  const std::byte* data() const { return data_; }
  int64_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, int64_t size);

  std::filesystem::path path_;
  const std::byte* data_;
  int64_t size_;
};

}  // namespace canvas
