// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header
// mapping tensor names to {dtype, shape, data_offsets}, then the raw little-endian tensor bytes.
//
// Files come from the internet, so the header is validated completely before any tensor is handed out:
// a file that opens without error can be read anywhere its header says without leaving the mapping.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/mapped_file.h"
#include "tensor/tensor.h"

namespace canvas {

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  // Byte range within the data section (which starts right after the header).
  int64_t data_begin = 0;
  int64_t data_end = 0;

  int64_t bytes() const { return data_end - data_begin; }
};

class SafetensorsFile {
 public:
  // Maps the file and validates its header; throws canvas::Error naming the file (and the tensor, where
  // one is at fault) on anything malformed.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return mapping_->path(); }
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Ordered by name.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  bool contains(std::string_view name) const;
  // Throws canvas::Error when the file holds no such tensor.
  const SafetensorsTensorInfo& info(std::string_view name) const;
  // A zero-copy view onto the mapped bytes; the tensor keeps the mapping alive. Read-only.
  Tensor tensor(std::string_view name) const;
  Tensor tensor(const SafetensorsTensorInfo& info) const;
  // Where the data section starts in the file.
  int64_t data_offset() const { return data_offset_; }

 private:
  SafetensorsFile() = default;
  const SafetensorsTensorInfo* find(std::string_view name) const;

  std::shared_ptr<const MappedFile> mapping_;
  std::shared_ptr<Buffer> data_section_;
  int64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
};

// The safetensors dtype string ("F32", "BF16", ...) for a dtype, or throws canvas::Error for dtypes the
// format cannot name (block-quantized ones).
std::string safetensors_dtype_name(DType dtype);

// Writes host tensors (any plain dtype of dtype.h) to `path`. The file appears complete or not at all:
// it is written beside the target under a temporary name and renamed into place. Meta tensors are
// written as zeros without touching the disk (a sparse file): full-size checkpoints for planning tests.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace canvas
