#include "io/gguf.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <set>

#include "util/error.h"

namespace canvas {

namespace {

constexpr std::array<char, 4> kMagic = {'G', 'G', 'U', 'F'};
constexpr int64_t kDefaultAlignment = 32;
constexpr std::string_view kAlignmentKey = "general.alignment";
// ggml's GGML_MAX_DIMS.
constexpr uint32_t kMaxDims = 4;
// Smallest encodings, to bound counts by the bytes left: a key/value (empty key, one-byte value) and a
// tensor info (empty name, one dim).
constexpr int64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr int64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

struct GgmlType {
  uint32_t id;
  std::string_view name;
  DType dtype;
  bool supported;
};

// GGML's type numbers (ggml.h); the unsupported ones are listed to name them in messages.
constexpr GgmlType kGgmlTypes[] = {
    {0, "F32", DType::F32, true},        {1, "F16", DType::F16, true},
    {2, "Q4_0", DType::Q4_0, true},      {3, "Q4_1", DType::Q4_1, true},
    {6, "Q5_0", DType::Q5_0, true},      {7, "Q5_1", DType::Q5_1, true},
    {8, "Q8_0", DType::Q8_0, true},      {9, "Q8_1", DType::F32, false},
    {10, "Q2_K", DType::Q2_K, true},     {11, "Q3_K", DType::Q3_K, true},
    {12, "Q4_K", DType::Q4_K, true},     {13, "Q5_K", DType::Q5_K, true},
    {14, "Q6_K", DType::Q6_K, true},     {15, "Q8_K", DType::F32, false},
    {16, "IQ2_XXS", DType::F32, false},  {17, "IQ2_XS", DType::F32, false},
    {18, "IQ3_XXS", DType::F32, false},  {19, "IQ1_S", DType::F32, false},
    {20, "IQ4_NL", DType::IQ4_NL, true}, {21, "IQ3_S", DType::F32, false},
    {22, "IQ2_S", DType::F32, false},    {23, "IQ4_XS", DType::IQ4_XS, true},
    {24, "I8", DType::F32, false},       {25, "I16", DType::F32, false},
    {26, "I32", DType::I32, true},       {27, "I64", DType::I64, true},
    {28, "F64", DType::F64, true},       {29, "IQ1_M", DType::F32, false},
    {30, "BF16", DType::BF16, true},     {34, "TQ1_0", DType::F32, false},
    {35, "TQ2_0", DType::F32, false},    {39, "MXFP4", DType::F32, false},
};

class FileError {
 public:
  explicit FileError(const std::filesystem::path& file) : prefix_("GGUF file '" + file.string() + "': ") {}
  [[noreturn]] void fail(const std::string& problem) const { throw Error(prefix_ + problem); }
  [[noreturn]] void fail(const std::string& tensor, const std::string& problem) const {
    throw Error(prefix_ + "tensor '" + tensor + "': " + problem);
  }

 private:
  std::string prefix_;
};

// Reads little-endian values off the mapped bytes, failing (with what was being read) at the end.
class Cursor {
 public:
  Cursor(const std::byte* data, int64_t size, const FileError& error)
      : data_(data), size_(size), error_(error) {}

  int64_t position() const { return position_; }
  int64_t remaining() const { return size_ - position_; }

  void need(int64_t bytes, const std::string& what) const {
    if (bytes > remaining())
      error_.fail(what + " needs " + std::to_string(bytes) + " bytes at offset " + std::to_string(position_) +
                  " but the file has " + std::to_string(remaining()) + " left (truncated file?)");
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + position_, sizeof(T));
    position_ += static_cast<int64_t>(sizeof(T));
    return value;
  }

  // A count that each item takes at least `min_item_bytes` of the rest of the file for.
  int64_t count(int64_t min_item_bytes, const std::string& what) {
    const auto value = read<uint64_t>(what);
    if (value > static_cast<uint64_t>(remaining() / min_item_bytes))
      error_.fail(what + " " + std::to_string(value) + " cannot fit the " + std::to_string(remaining()) +
                  " bytes left in the file");
    return static_cast<int64_t>(value);
  }

  std::string string(const std::string& what) {
    const int64_t length = count(1, what + " length");
    std::string text(reinterpret_cast<const char*>(data_ + position_), static_cast<size_t>(length));
    position_ += length;
    return text;
  }

 private:
  const std::byte* data_;
  int64_t size_;
  int64_t position_ = 0;
  const FileError& error_;
};

int64_t scalar_bytes(GgufType type) {
  switch (type) {
    case GgufType::Uint8:
    case GgufType::Int8:
    case GgufType::Bool:
      return 1;
    case GgufType::Uint16:
    case GgufType::Int16:
      return 2;
    case GgufType::Uint32:
    case GgufType::Int32:
    case GgufType::Float32:
      return 4;
    case GgufType::Uint64:
    case GgufType::Int64:
    case GgufType::Float64:
      return 8;
    case GgufType::String:
      return 8;  // the length; the characters may be none
    case GgufType::Array:
      return 0;
  }
  return 0;
}

GgufType value_type(uint32_t raw, const FileError& error, const std::string& key) {
  if (raw > static_cast<uint32_t>(GgufType::Float64))
    error.fail("metadata '" + key + "' has unknown value type " + std::to_string(raw));
  return static_cast<GgufType>(raw);
}

bool is_real(GgufType type) {
  return type == GgufType::Float32 || type == GgufType::Float64;
}

// Reads one scalar of `type` into `value` (its integer, real or string).
void read_scalar(Cursor& cursor, GgufType type, GgufValue& value, const FileError& error,
                 const std::string& key) {
  const std::string what = "metadata '" + key + "'";
  switch (type) {
    case GgufType::Uint8:
      value.integer = cursor.read<uint8_t>(what);
      return;
    case GgufType::Int8:
      value.integer = cursor.read<int8_t>(what);
      return;
    case GgufType::Uint16:
      value.integer = cursor.read<uint16_t>(what);
      return;
    case GgufType::Int16:
      value.integer = cursor.read<int16_t>(what);
      return;
    case GgufType::Uint32:
      value.integer = cursor.read<uint32_t>(what);
      return;
    case GgufType::Int32:
      value.integer = cursor.read<int32_t>(what);
      return;
    case GgufType::Int64:
      value.integer = cursor.read<int64_t>(what);
      return;
    case GgufType::Uint64: {
      const auto raw = cursor.read<uint64_t>(what);
      if (raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        error.fail(what + " holds " + std::to_string(raw) + ", past the largest supported integer");
      value.integer = static_cast<int64_t>(raw);
      return;
    }
    case GgufType::Bool: {
      const auto raw = cursor.read<uint8_t>(what);
      if (raw > 1) error.fail(what + " is a bool holding " + std::to_string(raw));
      value.integer = raw;
      return;
    }
    case GgufType::Float32:
      value.real = cursor.read<float>(what);
      return;
    case GgufType::Float64:
      value.real = cursor.read<double>(what);
      return;
    case GgufType::String:
      value.string = cursor.string(what);
      return;
    case GgufType::Array:
      break;
  }
  error.fail(what + " nests an array in an array, which GGUF readers do not support");
}

GgufValue read_value(Cursor& cursor, GgufType type, const FileError& error, const std::string& key) {
  GgufValue value;
  value.type = type;
  if (type != GgufType::Array) {
    read_scalar(cursor, type, value, error, key);
    return value;
  }
  value.element_type = value_type(cursor.read<uint32_t>("metadata '" + key + "' array type"), error, key);
  if (value.element_type == GgufType::Array)
    error.fail("metadata '" + key + "' nests an array in an array, which GGUF readers do not support");
  const int64_t count = cursor.count(scalar_bytes(value.element_type), "metadata '" + key + "' array length");
  GgufValue element;
  for (int64_t i = 0; i < count; ++i) {
    read_scalar(cursor, value.element_type, element, error, key);
    if (value.element_type == GgufType::String) {
      value.strings.push_back(std::move(element.string));
    } else if (is_real(value.element_type)) {
      value.reals.push_back(element.real);
    } else {
      value.integers.push_back(element.integer);
    }
  }
  return value;
}

const GgmlType& ggml_type(uint32_t id, const FileError& error, const std::string& tensor) {
  for (const GgmlType& type : kGgmlTypes) {
    if (type.id != id) continue;
    if (!type.supported)
      error.fail(tensor, "GGML type " + std::string(type.name) +
                             " is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K, "
                             "IQ4_NL and IQ4_XS are)");
    return type;
  }
  error.fail(tensor, "unknown GGML type " + std::to_string(id));
}

GgufTensorInfo read_tensor_info(Cursor& cursor, const FileError& error, int64_t alignment) {
  GgufTensorInfo info;
  info.name = cursor.string("tensor name");
  const auto dims = cursor.read<uint32_t>("tensor '" + info.name + "' dim count");
  if (dims == 0 || dims > kMaxDims)
    error.fail(info.name, std::to_string(dims) + " dims (GGUF tensors have 1 to 4)");
  int64_t elements = 1;
  for (uint32_t i = 0; i < dims; ++i) {
    const auto extent = cursor.read<uint64_t>("tensor '" + info.name + "' dims");
    if (extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (extent != 0 && static_cast<uint64_t>(elements) >
                            static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / extent))
      error.fail(info.name, "dims overflow a 64-bit element count");
    elements *= static_cast<int64_t>(extent);
    // GGUF lists the innermost (fastest-varying) dim first, torch the outermost.
    info.shape.insert(info.shape.begin(), static_cast<int64_t>(extent));
  }
  const GgmlType& type =
      ggml_type(cursor.read<uint32_t>("tensor '" + info.name + "' type"), error, info.name);
  info.dtype = type.dtype;
  const DTypeInfo& dtype = dtype_info(info.dtype);
  if (info.shape.back() % dtype.block_elements != 0)
    error.fail(info.name, "innermost dim " + std::to_string(info.shape.back()) +
                              " is not a multiple of the " + std::string(type.name) + " block of " +
                              std::to_string(dtype.block_elements));
  if (elements / dtype.block_elements > std::numeric_limits<int64_t>::max() / dtype.block_bytes)
    error.fail(info.name, "byte size overflows");
  const auto offset = cursor.read<uint64_t>("tensor '" + info.name + "' offset");
  if (offset > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 2))
    error.fail(info.name, "offset " + std::to_string(offset) + " is past any file");
  if (offset % static_cast<uint64_t>(alignment) != 0)
    error.fail(info.name, "offset " + std::to_string(offset) + " is not a multiple of the alignment " +
                              std::to_string(alignment));
  info.data_begin = static_cast<int64_t>(offset);
  info.data_end = info.data_begin + storage_bytes(info.dtype, elements);
  return info;
}

int64_t read_alignment(const std::map<std::string, GgufValue, std::less<>>& metadata,
                       const FileError& error) {
  const auto found = metadata.find(kAlignmentKey);
  if (found == metadata.end()) return kDefaultAlignment;
  const GgufValue& value = found->second;
  if (value.type != GgufType::Uint32) error.fail(std::string(kAlignmentKey) + " is not a uint32");
  if (value.integer == 0 || (value.integer & (value.integer - 1)) != 0)
    error.fail(std::string(kAlignmentKey) + " " + std::to_string(value.integer) + " is not a power of two");
  return value.integer;
}

// ComfyUI-GGUF's recorded torch shapes, for tensors it stored flattened or merged.
void apply_orig_shapes(std::vector<GgufTensorInfo>& tensors,
                       const std::map<std::string, GgufValue, std::less<>>& metadata,
                       const FileError& error) {
  for (GgufTensorInfo& info : tensors) {
    const auto found = metadata.find(std::string(kGgufOrigShapePrefix) + info.name);
    if (found == metadata.end()) continue;
    const GgufValue& value = found->second;
    if (value.type != GgufType::Array || value.element_type == GgufType::String ||
        is_real(value.element_type))
      error.fail(info.name, std::string(kGgufOrigShapePrefix) + info.name + " is not an array of integers");
    Shape shape(value.integers.begin(), value.integers.end());
    int64_t elements = 1;
    for (int64_t extent : shape) {
      if (extent < 0 || (extent != 0 && elements > std::numeric_limits<int64_t>::max() / extent))
        error.fail(info.name, "original shape " + shape_str(shape) + " is not a valid shape");
      elements *= extent;
    }
    if (elements != shape_numel(info.shape))
      error.fail(info.name, "original shape " + shape_str(shape) + " does not hold the " +
                                std::to_string(shape_numel(info.shape)) + " stored elements of shape " +
                                shape_str(info.shape));
    info.shape = std::move(shape);
  }
}

}  // namespace

GgufFile GgufFile::open(const std::filesystem::path& path) {
  GgufFile file;
  file.mapping_ = MappedFile::open(path);
  const MappedFile& mapping = *file.mapping_;
  const FileError error(path);
  Cursor cursor(mapping.data(), mapping.size(), error);

  const auto magic = cursor.read<std::array<char, 4>>("magic");
  if (magic != kMagic) error.fail("does not start with the GGUF magic");
  file.version_ = cursor.read<uint32_t>("version");
  if (file.version_ == 1) error.fail("GGUF version 1 is not supported (versions 2 and 3 are)");
  if (file.version_ == 0x02000000u || file.version_ == 0x03000000u)
    error.fail("big-endian GGUF files are not supported");
  if (file.version_ != 2 && file.version_ != 3)
    error.fail("unknown GGUF version " + std::to_string(file.version_));
  const int64_t tensor_count = cursor.count(kMinTensorInfoBytes, "tensor count");
  const int64_t metadata_count = cursor.count(kMinKeyValueBytes, "metadata count");

  for (int64_t i = 0; i < metadata_count; ++i) {
    std::string key = cursor.string("metadata key");
    const GgufType type = value_type(cursor.read<uint32_t>("metadata '" + key + "' type"), error, key);
    GgufValue value = read_value(cursor, type, error, key);
    if (!file.metadata_.emplace(key, std::move(value)).second)
      error.fail("metadata key '" + key + "' appears twice");
  }
  file.alignment_ = read_alignment(file.metadata_, error);

  std::set<std::string, std::less<>> names;
  file.tensors_.reserve(static_cast<size_t>(tensor_count));
  for (int64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info = read_tensor_info(cursor, error, file.alignment_);
    if (!names.insert(info.name).second) error.fail(info.name, "appears twice");
    file.tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment (an empty file may end before it).
  const int64_t alignment = file.alignment_;
  file.data_offset_ = (cursor.position() + alignment - 1) / alignment * alignment;
  const int64_t data_bytes = std::max<int64_t>(0, mapping.size() - file.data_offset_);
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& info : file.tensors_) {
    if (info.data_end > data_bytes)
      error.fail(info.name, "bytes [" + std::to_string(info.data_begin) + ", " +
                                std::to_string(info.data_end) + ") of the data section run past its " +
                                std::to_string(data_bytes) + " bytes (truncated file?)");
    by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->data_begin < b->data_begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->data_begin < by_offset[i - 1]->data_end)
      error.fail(by_offset[i]->name, "overlaps tensor '" + by_offset[i - 1]->name + "' in the data section");
  }
  apply_orig_shapes(file.tensors_, file.metadata_, error);
  file.data_section_ = std::make_shared<Buffer>(
      file.mapping_, mapping.data() + std::min(file.data_offset_, mapping.size()), data_bytes, Device::cpu());
  return file;
}

const GgufValue* GgufFile::find_metadata(std::string_view key) const {
  const auto found = metadata_.find(key);
  return found == metadata_.end() ? nullptr : &found->second;
}

const std::string& GgufFile::metadata_string(std::string_view key) const {
  const GgufValue* value = find_metadata(key);
  const FileError error(path());
  if (value == nullptr) error.fail("has no metadata '" + std::string(key) + "'");
  if (value->type != GgufType::String) error.fail("metadata '" + std::string(key) + "' is not a string");
  return value->string;
}

Tensor GgufFile::tensor(const GgufTensorInfo& info) const {
  return Tensor::from_buffer(data_section_, info.shape, info.dtype, info.data_begin);
}

}  // namespace canvas
