#include "io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "util/error.h"

namespace canvas {

namespace {

using nlohmann::json;

// The reference implementation's limit; a larger length means the file is not safetensors at all.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int64_t kHeaderLengthBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

class HeaderError {
 public:
  explicit HeaderError(const std::filesystem::path& file)
      : prefix_("safetensors file '" + file.string() + "': ") {}
  [[noreturn]] void fail(const std::string& problem) const { throw Error(prefix_ + problem); }
  [[noreturn]] void fail(const std::string& tensor, const std::string& problem) const {
    throw Error(prefix_ + "tensor '" + tensor + "': " + problem);
  }

 private:
  std::string prefix_;
};

// nlohmann::json silently keeps the last of two equal keys, but a header naming one tensor twice is
// ambiguous, so duplicates are caught during the parse.
struct DuplicateKey {
  bool found = false;
  bool at_top_level = false;
  std::string key;
};

json parse_header(const char* begin, const char* end, DuplicateKey& duplicate) {
  std::vector<std::set<std::string>> open_objects;
  auto track_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !duplicate.found) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = {true, depth == 1, key};
    }
    return true;
  };
  return json::parse(begin, end, track_keys);
}

// Accepts JSON integers in [0, int64 max]; floats, negatives and strings are rejected.
bool read_non_negative(const json& value, int64_t& out) {
  if (value.is_number_unsigned()) {
    uint64_t unsigned_value = value.get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = static_cast<int64_t>(unsigned_value);
    return true;
  }
  if (value.is_number_integer()) {
    out = value.get<int64_t>();
    return out >= 0;
  }
  return false;
}

SafetensorsTensorInfo parse_tensor_entry(const HeaderError& error, const std::string& name, const json& entry,
                                         int64_t data_section_bytes) {
  SafetensorsTensorInfo info;
  info.name = name;
  if (!entry.is_object()) error.fail(name, "entry is not a JSON object");

  auto dtype_field = entry.find("dtype");
  if (dtype_field == entry.end() || !dtype_field->is_string())
    error.fail(name, "missing or non-string \"dtype\"");
  const auto& dtype_text = dtype_field->get_ref<const std::string&>();
  if (!dtype_from_safetensors(dtype_text, info.dtype)) {
    error.fail(name, "unknown dtype '" + dtype_text +
                         "' (known: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, U8, BOOL)");
  }

  auto shape_field = entry.find("shape");
  if (shape_field == entry.end() || !shape_field->is_array())
    error.fail(name, "missing or non-array \"shape\"");
  // Products are formed with zero extents counted as one, as contiguous strides are, so that no later
  // arithmetic on the shape can overflow either.
  int64_t nonzero_product = 1;
  bool has_zero_extent = false;
  for (const json& extent_value : *shape_field) {
    int64_t extent = 0;
    if (!read_non_negative(extent_value, extent)) {
      error.fail(name, "shape " + shape_field->dump() + " has an extent that is not a non-negative integer");
    }
    has_zero_extent = has_zero_extent || extent == 0;
    if (__builtin_mul_overflow(nonzero_product, std::max<int64_t>(extent, 1), &nonzero_product)) {
      error.fail(name, "shape " + shape_field->dump() + " has more elements than can be addressed");
    }
    info.shape.push_back(extent);
  }
  const int64_t numel = has_zero_extent ? 0 : nonzero_product;
  int64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, element_size(info.dtype), &expected_bytes)) {
    error.fail(name, "shape " + shape_str(info.shape) + " of " + dtype_text +
                         " has more bytes than can be addressed");
  }

  auto offsets_field = entry.find("data_offsets");
  if (offsets_field == entry.end() || !offsets_field->is_array() || offsets_field->size() != 2 ||
      !read_non_negative((*offsets_field)[0], info.data_begin) ||
      !read_non_negative((*offsets_field)[1], info.data_end) || info.data_begin > info.data_end) {
    error.fail(name, "\"data_offsets\" must be [begin, end] with 0 <= begin <= end, not " +
                         (offsets_field == entry.end() ? std::string("missing") : offsets_field->dump()));
  }
  if (info.data_end > data_section_bytes) {
    error.fail(name, "data_offsets [" + std::to_string(info.data_begin) + ", " +
                         std::to_string(info.data_end) + "] run past the data section of " +
                         std::to_string(data_section_bytes) + " bytes (truncated file?)");
  }
  if (info.bytes() != expected_bytes) {
    error.fail(name, "holds " + std::to_string(info.bytes()) + " bytes but shape " + shape_str(info.shape) +
                         " of " + dtype_text + " needs " + std::to_string(expected_bytes));
  }
  return info;
}

std::map<std::string, std::string> parse_metadata(const HeaderError& error, const json& metadata) {
  if (!metadata.is_object()) error.fail("\"__metadata__\" is not a JSON object");
  std::map<std::string, std::string> result;
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) error.fail("\"__metadata__\" entry '" + key + "' is not a string");
    result.emplace(key, value.get<std::string>());
  }
  return result;
}

void check_no_overlap(const HeaderError& error, std::vector<SafetensorsTensorInfo>& tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return std::tie(a.data_begin, a.data_end) < std::tie(b.data_begin, b.data_end);
  });
  for (size_t i = 1; i < tensors.size(); ++i) {
    const auto& previous = tensors[i - 1];
    const auto& current = tensors[i];
    if (previous.data_end > current.data_begin) {
      error.fail(current.name, "bytes [" + std::to_string(current.data_begin) + ", " +
                                   std::to_string(current.data_end) + ") overlap those of tensor '" +
                                   previous.name + "' [" + std::to_string(previous.data_begin) + ", " +
                                   std::to_string(previous.data_end) + ")");
    }
  }
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.mapping_ = MappedFile::open(path);
  const MappedFile& mapping = *file.mapping_;
  HeaderError error(path);

  if (mapping.size() < kHeaderLengthBytes) {
    error.fail("file of " + std::to_string(mapping.size()) +
               " bytes is too short for the 8-byte header length");
  }
  uint64_t header_length = 0;
  for (int i = 0; i < kHeaderLengthBytes; ++i) {
    header_length |= static_cast<uint64_t>(mapping.data()[i]) << (8 * i);
  }
  if (header_length > kMaxHeaderBytes) {
    error.fail("header length " + std::to_string(header_length) + " exceeds 100 MB: not a safetensors file");
  }
  const int64_t file_size = mapping.size();
  if (static_cast<int64_t>(header_length) > file_size - kHeaderLengthBytes) {
    error.fail("header length " + std::to_string(header_length) + " runs past the end of the file (" +
               std::to_string(file_size) + " bytes; truncated?)");
  }
  file.data_offset_ = kHeaderLengthBytes + static_cast<int64_t>(header_length);
  const int64_t data_section_bytes = file_size - file.data_offset_;

  const auto* header_begin = reinterpret_cast<const char*>(mapping.data() + kHeaderLengthBytes);
  json header;
  DuplicateKey duplicate;
  try {
    header = parse_header(header_begin, header_begin + header_length, duplicate);
  } catch (const json::exception& parse_error) {
    error.fail(std::string("malformed JSON header: ") + parse_error.what());
  }
  if (duplicate.found) {
    if (duplicate.at_top_level) error.fail(duplicate.key, "appears twice in the header");
    error.fail("key '" + duplicate.key + "' appears twice in one header entry");
  }
  if (!header.is_object()) error.fail("header is not a JSON object");

  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      file.metadata_ = parse_metadata(error, entry);
    } else {
      file.tensors_.push_back(parse_tensor_entry(error, name, entry, data_section_bytes));
    }
  }
  check_no_overlap(error, file.tensors_);
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  file.data_section_ = std::make_shared<Buffer>(file.mapping_, mapping.data() + file.data_offset_,
                                                data_section_bytes, Device::cpu());
  return file;
}

const SafetensorsTensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto found = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const SafetensorsTensorInfo& info, std::string_view key) { return info.name < key; });
  return found != tensors_.end() && found->name == name ? &*found : nullptr;
}

bool SafetensorsFile::contains(std::string_view name) const {
  return find(name) != nullptr;
}

const SafetensorsTensorInfo& SafetensorsFile::info(std::string_view name) const {
  const SafetensorsTensorInfo* found = find(name);
  if (!found) {
    throw Error("tensor '" + std::string(name) + "' not found in '" + path().string() + "' (" +
                std::to_string(tensors_.size()) + " tensors)");
  }
  return *found;
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  return tensor(info(name));
}

Tensor SafetensorsFile::tensor(const SafetensorsTensorInfo& info) const {
  return Tensor::from_buffer(data_section_, info.shape, info.dtype, info.data_begin);
}

namespace {

// The format's names are dtype.h's names in upper case; the round trip rejects the dtypes it lacks.
bool to_safetensors_name(DType dtype, std::string& name) {
  name = dtype_name(dtype);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  DType parsed;
  return dtype_from_safetensors(name, parsed) && parsed == dtype;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  std::string name;
  check(to_safetensors_name(dtype, name),
        "dtype " + std::string(dtype_name(dtype)) + " cannot be stored in a safetensors file");
  return name;
}

namespace {

// Removes the temporary file unless the write reached the final rename.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::filesystem::path path) : path_(std::move(path)) {}
  ~TemporaryFile() {
    if (!committed_) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::filesystem::path& path() const { return path_; }
  void commit() { committed_ = true; }

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

void write_all(std::FILE* stream, const void* data, size_t bytes, const std::filesystem::path& path) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, stream) != bytes) {
    throw Error("cannot write '" + path.string() + "': " + std::strerror(errno));
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string context = "writing '" + path.string() + "': ";
  std::vector<std::pair<std::string, Tensor>> ordered;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : tensors) {
    check(name != kMetadataKey, context + "'" + name + "' is reserved for metadata");
    check(seen.insert(name).second, context + "tensor '" + name + "' is given twice");
    check(tensor.defined(), context + "tensor '" + name + "' is undefined");
    std::string dtype_text;
    check(to_safetensors_name(tensor.dtype(), dtype_text), context + "tensor '" + name + "' has dtype " +
                                                               std::string(dtype_name(tensor.dtype())) +
                                                               ", which safetensors cannot store");
    check(tensor.device().is_cpu() || tensor.device().is_meta(),
          context + "tensor '" + name + "' is on " + tensor.device().str() + "; copy it to the host first");
    ordered.emplace_back(name, tensor.contiguous());
  }
  // Largest elements first: with the data section 8-aligned, every tensor then starts aligned to its
  // element size, so readers may use typed pointers straight into the mapping.
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
    return element_size(a.second.dtype()) > element_size(b.second.dtype());
  });

  json header = json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  int64_t offset = 0;
  for (const auto& [name, tensor] : ordered) {
    header[name] = {{"dtype", safetensors_dtype_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + tensor.nbytes()}}};
    offset += tensor.nbytes();
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& dump_error) {
    throw Error(context + dump_error.what());
  }
  header_text.append((8 - (kHeaderLengthBytes + header_text.size()) % 8) % 8, ' ');
  unsigned char length_bytes[kHeaderLengthBytes];
  for (int i = 0; i < kHeaderLengthBytes; ++i)
    length_bytes[i] = static_cast<unsigned char>(header_text.size() >> (8 * i));

  TemporaryFile temporary(path.parent_path() /
                          ('.' + path.filename().string() + ".partial-" + std::to_string(::getpid())));
  std::FILE* stream = std::fopen(temporary.path().c_str(), "wb");
  if (!stream) throw Error("cannot create '" + temporary.path().string() + "': " + std::strerror(errno));
  try {
    write_all(stream, length_bytes, sizeof(length_bytes), temporary.path());
    write_all(stream, header_text.data(), header_text.size(), temporary.path());
    int64_t data_bytes = 0;
    for (const auto& entry : ordered) {
      const Tensor& tensor = entry.second;
      data_bytes += tensor.nbytes();
      // Meta tensors have no values: their bytes become a hole that reads as zeros.
      if (tensor.device().is_meta()) {
        check(std::fseek(stream, static_cast<long>(tensor.nbytes()), SEEK_CUR) == 0,
              context + std::strerror(errno));
      } else {
        write_all(stream, tensor.raw_data(), static_cast<size_t>(tensor.nbytes()), temporary.path());
      }
    }
    const int64_t file_bytes = static_cast<int64_t>(sizeof(length_bytes) + header_text.size()) + data_bytes;
    check(std::fflush(stream) == 0 && ::ftruncate(::fileno(stream), static_cast<off_t>(file_bytes)) == 0,
          context + std::strerror(errno));
  } catch (...) {
    std::fclose(stream);
    throw;
  }
  if (std::fclose(stream) != 0)
    throw Error("cannot write '" + temporary.path().string() + "': " + std::strerror(errno));
  std::error_code rename_error;
  std::filesystem::rename(temporary.path(), path, rename_error);
  if (rename_error)
    throw Error("cannot move the written file into '" + path.string() + "': " + rename_error.message());
  temporary.commit();
}

}  // namespace canvas
