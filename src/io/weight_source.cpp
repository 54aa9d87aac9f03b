#include "io/weight_source.h"

#include <algorithm>

#include "io/json_config.h"
#include "tensor/ggml_dequantize.h"
#include "util/error.h"

namespace canvas {

namespace {

constexpr std::string_view kIndexSuffix = ".safetensors.index.json";
constexpr size_t kListedProblems = 5;

bool ends_with(const std::filesystem::path& path, std::string_view suffix) {
  return path.filename().string().ends_with(suffix);
}

std::string quoted(const std::filesystem::path& path) {
  return '\'' + path.string() + '\'';
}

// Lists the first few items and counts the rest, so a thousand missing tensors make a readable message.
std::string summarize(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size() && i < kListedProblems; ++i) text += (i ? ", " : "") + items[i];
  if (items.size() > kListedProblems)
    text += " and " + std::to_string(items.size() - kListedProblems) + " more";
  return text;
}

// Shard names come from a downloaded file; they must stay inside the index's folder.
std::filesystem::path shard_path(const std::filesystem::path& index_file, const std::string& shard) {
  std::filesystem::path relative(shard);
  bool escapes = relative.is_absolute() || relative.empty();
  for (const auto& part : relative) escapes = escapes || part == "..";
  check(!escapes, "index " + quoted(index_file) + " names shard '" + shard + "' outside its folder");
  check(relative.extension() != ".gguf",
        "index " + quoted(index_file) + " names shard '" + shard + "', but indexes shard safetensors files");
  return index_file.parent_path() / relative;
}

}  // namespace

std::string rewrite_name(std::string_view name, const std::vector<NameRewrite>& rewrites) {
  for (const NameRewrite& rewrite : rewrites) {
    if (name.starts_with(rewrite.from)) return rewrite.to + std::string(name.substr(rewrite.from.size()));
  }
  return std::string(name);
}

WeightSource WeightSource::open(const std::filesystem::path& path, const std::vector<NameRewrite>& rewrites) {
  std::error_code status_error;
  const auto status = std::filesystem::status(path, status_error);
  check(std::filesystem::exists(status), "weights " + quoted(path) + " do not exist");
  if (!std::filesystem::is_directory(status)) {
    if (ends_with(path, ".index.json")) return open_index(path, rewrites);
    return open_files({path}, rewrites);
  }

  std::vector<std::filesystem::path> indexes;
  std::vector<std::filesystem::path> files;
  std::error_code list_error;
  std::filesystem::directory_iterator listing(path, list_error);
  check(!list_error, "cannot list " + quoted(path) + ": " + list_error.message());
  for (const auto& entry : listing) {
    // Anything but a folder under a weights name is opened, so a FIFO or a device there is reported as such.
    std::error_code type_error;
    if (entry.is_directory(type_error)) continue;
    if (ends_with(entry.path(), kIndexSuffix)) indexes.push_back(entry.path());
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  }
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  if (indexes.size() == 1) return open_index(indexes.front(), rewrites);
  if (indexes.size() > 1) {
    std::vector<std::string> names;
    for (const auto& index : indexes) names.push_back(index.filename().string());
    throw Error("folder " + quoted(path) + " holds several checkpoint indexes (" + summarize(names) +
                "); give the one to use");
  }
  check(!files.empty(), "folder " + quoted(path) + " holds no .safetensors files");
  return open_files(files, rewrites, quoted(path));
}

WeightSource WeightSource::open_index(const std::filesystem::path& index_file,
                                      const std::vector<NameRewrite>& rewrites) {
  const nlohmann::json index = read_json_file(index_file);
  check(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
        "index " + quoted(index_file) + " has no \"weight_map\" object");

  std::map<std::string, std::vector<std::string>> tensors_by_shard;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    check(shard.is_string(), "index " + quoted(index_file) + " maps tensor '" + tensor + "' to " +
                                 shard.dump() + ", not a file name");
    tensors_by_shard[shard.get<std::string>()].push_back(tensor);
  }

  std::vector<std::string> missing_shards;
  std::vector<std::filesystem::path> shard_files;
  for (const auto& [shard, tensors] : tensors_by_shard) {
    std::filesystem::path file = shard_path(index_file, shard);
    std::error_code status_error;
    if (!std::filesystem::exists(file, status_error)) {
      missing_shards.push_back(shard + " (" + std::to_string(tensors.size()) + " tensors)");
    }
    shard_files.push_back(std::move(file));
  }
  check(missing_shards.empty(),
        "index " + quoted(index_file) + " names " + std::to_string(missing_shards.size()) + " of " +
            std::to_string(shard_files.size()) + " shards that are missing: " + summarize(missing_shards) +
            " (incomplete download?)");

  WeightSource source = open_files(shard_files, rewrites, quoted(index_file));
  std::vector<std::string> misplaced;
  size_t shard_number = 0;
  for (const auto& [shard, tensors] : tensors_by_shard) {
    const SafetensorsFile& file = (*source.files_)[shard_number++];
    for (const std::string& tensor : tensors) {
      if (!file.contains(tensor)) misplaced.push_back('\'' + tensor + "' (in " + shard + ")");
    }
  }
  check(misplaced.empty(), "index " + quoted(index_file) + " maps " + std::to_string(misplaced.size()) +
                               " tensors that their shards do not hold: " + summarize(misplaced));
  return source;
}

WeightSource WeightSource::open_files(const std::vector<std::filesystem::path>& files,
                                      const std::vector<NameRewrite>& rewrites, std::string description) {
  check(!files.empty(), "no weight files given");
  auto opened = std::make_shared<std::vector<SafetensorsFile>>();
  auto opened_gguf = std::make_shared<std::vector<GgufFile>>();
  opened->reserve(files.size());
  opened_gguf->reserve(files.size());
  for (const auto& file : files) {
    if (file.extension() == ".gguf") {
      opened_gguf->push_back(GgufFile::open(file));
    } else {
      opened->push_back(SafetensorsFile::open(file));
    }
  }

  WeightSource source;
  source.description_ = std::move(description);
  if (source.description_.empty()) {
    source.description_ = quoted(files.front());
    if (files.size() > 1) source.description_ += " and " + std::to_string(files.size() - 1) + " other files";
  }
  auto add = [&](const Entry& entry) {
    auto [existing, inserted] = source.tensors_.try_emplace(rewrite_name(entry.info->name, rewrites), entry);
    if (!inserted) {
      const Entry& first = existing->second;
      throw Error("tensor '" + existing->first + "' is stored twice in " + source.description_ + ": as '" +
                  first.info->name + "' in " + quoted(first.path()) + " and as '" + entry.info->name +
                  "' in " + quoted(entry.path()));
    }
  };
  for (const SafetensorsFile& file : *opened) {
    for (const SafetensorsTensorInfo& info : file.tensors()) add({&file, nullptr, &info});
  }
  for (const GgufFile& file : *opened_gguf) {
    for (const GgufTensorInfo& info : file.tensors()) add({nullptr, &file, &info});
  }
  source.files_ = std::move(opened);
  source.gguf_files_ = std::move(opened_gguf);
  return source;
}

Tensor WeightSource::read(const Entry& entry) const {
  if (entry.file) return entry.file->tensor(*entry.info);
  const Tensor stored = entry.gguf->tensor(*entry.info);
  return is_ggml_block_type(stored.dtype()) ? dequantize_ggml(stored) : stored;
}

const WeightSource::Entry& WeightSource::find(std::string_view name) const {
  auto found = tensors_.find(name);
  if (found != tensors_.end()) return found->second;

  std::string message = "tensor '" + std::string(name) + "' not found in " + description_ + " (" +
                        std::to_string(tensors_.size()) + " tensors)";
  // A stored name that differs only by a leading prefix usually means a missing name rewrite.
  for (const auto& [stored, entry] : tensors_) {
    if (stored.size() > name.size() && stored.ends_with(name) &&
        stored[stored.size() - name.size() - 1] == '.') {
      message += "; there is a tensor '" + stored + "', so the names may carry a prefix";
      break;
    }
  }
  throw Error(message);
}

bool WeightSource::contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

Tensor WeightSource::get(std::string_view name) const {
  return read(find(name));
}

Tensor WeightSource::get(std::string_view name, const Shape& expected_shape) const {
  const Entry& entry = find(name);
  check(entry.info->shape == expected_shape, "tensor '" + std::string(name) + "' in " + description_ +
                                                 " has shape " + shape_str(entry.info->shape) +
                                                 ", expected " + shape_str(expected_shape));
  return read(entry);
}

const SafetensorsTensorInfo& WeightSource::info(std::string_view name) const {
  return *find(name).info;
}

std::vector<std::string> WeightSource::names() const {
  std::vector<std::string> result;
  result.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) result.push_back(name);
  return result;
}

int64_t WeightSource::total_bytes() const {
  return bytes_with_prefix("");
}

int64_t WeightSource::bytes_with_prefix(std::string_view prefix) const {
  int64_t bytes = 0;
  for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.starts_with(prefix); ++it) {
    bytes += it->second.info->bytes();
  }
  return bytes;
}

WeightSource WeightSource::subset(std::string_view prefix) const {
  WeightSource result;
  result.files_ = files_;
  result.gguf_files_ = gguf_files_;
  result.description_ = description_ + " [" + std::string(prefix) + "*]";
  for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.starts_with(prefix); ++it) {
    result.tensors_.emplace(it->first.substr(prefix.size()), it->second);
  }
  return result;
}

}  // namespace canvas
