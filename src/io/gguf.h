// Reading GGUF files (versions 2 and 3), the format of llama.cpp and of ComfyUI-GGUF's diffusion models: a
// little-endian header (magic "GGUF", version, tensor and metadata counts), typed key/value metadata,
// tensor infos (name, dims innermost first, GGML type, offset), then the data section aligned to
// `general.alignment` (32 by default).
//
// Files come from the internet, so everything is validated at open, like safetensors: counts and string
// lengths against the bytes left, value types, dims (at most four, products that overflow), types,
// alignment, tensors past the end or overlapping one another. A file that opens can be read anywhere its
// infos say without leaving the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace canvas {

// GGUF's metadata value types, numbered as the format numbers them.
enum class GgufType : uint32_t {
  Uint8 = 0,
  Int8 = 1,
  Uint16 = 2,
  Int16 = 3,
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  Uint64 = 10,
  Int64 = 11,
  Float64 = 12,
};

// One metadata value. Integers and booleans are held in `integer`, floats in `real`; an array holds its
// elements in the list that matches its element type. Arrays of arrays are rejected at open (as ggml does).
struct GgufValue {
  GgufType type = GgufType::Uint8;
  GgufType element_type = GgufType::Uint8;  // arrays only
  int64_t integer = 0;
  double real = 0;
  std::string string;
  std::vector<int64_t> integers;
  std::vector<double> reals;
  std::vector<std::string> strings;
};

// A GGUF tensor is described as a safetensors one: `shape` in torch order (GGUF lists dims innermost
// first, so they are reversed), the byte range within the data section, and its dtype (a GGML block type
// for quantized tensors, tensor/ggml_dequantize.h).
using GgufTensorInfo = SafetensorsTensorInfo;

// ComfyUI-GGUF records the torch shape of a tensor it stored under another shape in this key + name.
inline constexpr std::string_view kGgufOrigShapePrefix = "comfy.gguf.orig_shape.";

class GgufFile {
 public:
  // Maps the file and validates it; throws canvas::Error naming the file (and the tensor or key at fault).
  // Tensors named in `comfy.gguf.orig_shape.*` metadata take the recorded shape.
  static GgufFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return mapping_->path(); }
  uint32_t version() const { return version_; }
  int64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  // nullptr when the key is absent.
  const GgufValue* find_metadata(std::string_view key) const;
  // A string value; throws canvas::Error when absent or not a string.
  const std::string& metadata_string(std::string_view key) const;
  // In file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // A zero-copy view onto the mapped bytes in the stored dtype; the tensor keeps the mapping alive.
  Tensor tensor(const GgufTensorInfo& info) const;
  // Where the data section starts in the file.
  int64_t data_offset() const { return data_offset_; }

 private:
  GgufFile() = default;

  std::shared_ptr<const MappedFile> mapping_;
  std::shared_ptr<Buffer> data_section_;
  uint32_t version_ = 0;
  int64_t alignment_ = 0;
  int64_t data_offset_ = 0;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace canvas
