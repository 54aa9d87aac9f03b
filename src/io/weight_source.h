// A named set of tensors drawn from one or more safetensors or GGUF files, under the names the models ask
// for. GGUF tensors in GGML block types are widened to f32 as they are handed out (get), so models only see
// plain float weights; info() still reports their stored dtype and bytes.
//
// Checkpoints of one model come under several naming styles (ComfyUI prefixes, transformers 4 vs 5
// text-encoder names), so stored names pass through prefix rewrites once, at open; everything after
// that sees one canonical name per tensor.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf.h"
#include "io/safetensors.h"

namespace canvas {

// Replaces a leading `from` with `to`. Rules are tried in order and the first match applies.
struct NameRewrite {
  std::string from;
  std::string to;
};

// Applies the first matching rewrite, or returns the name unchanged.
std::string rewrite_name(std::string_view name, const std::vector<NameRewrite>& rewrites);

class WeightSource {
 public:
  // `path` is a .safetensors or .gguf file, a *.safetensors.index.json of a sharded checkpoint, or a folder:
  // its single *.safetensors.index.json when it has one, else all of its *.safetensors files.
  static WeightSource open(const std::filesystem::path& path, const std::vector<NameRewrite>& rewrites = {});
  // Reads the index's weight_map, opens every shard once and checks that each mapped tensor is in its
  // shard; missing shards and misplaced tensors are reported together.
  static WeightSource open_index(const std::filesystem::path& index_file,
                                 const std::vector<NameRewrite>& rewrites = {});
  static WeightSource open_files(const std::vector<std::filesystem::path>& files,
                                 const std::vector<NameRewrite>& rewrites = {}, std::string description = "");

  bool contains(std::string_view name) const;
  // Throws canvas::Error "tensor 'x' not found in <source> (N tensors)".
  Tensor get(std::string_view name) const;
  // Also checks the shape; the message shows both shapes.
  Tensor get(std::string_view name, const Shape& expected_shape) const;
  // Storage details without touching the tensor bytes, for memory planning.
  const SafetensorsTensorInfo& info(std::string_view name) const;
  DType dtype(std::string_view name) const { return info(name).dtype; }

  // Sorted canonical names.
  std::vector<std::string> names() const;
  size_t size() const { return tensors_.size(); }
  int64_t total_bytes() const;
  int64_t bytes_with_prefix(std::string_view prefix) const;
  // The tensors whose names start with `prefix`, with the prefix stripped. Shares the open files.
  WeightSource subset(std::string_view prefix) const;
  // Where the tensors come from, as used in messages.
  const std::string& description() const { return description_; }

 private:
  struct Entry {
    const SafetensorsFile* file;  // null for a tensor of a GGUF file
    const GgufFile* gguf;         // null for a tensor of a safetensors file
    const SafetensorsTensorInfo* info;

    const std::filesystem::path& path() const { return file ? file->path() : gguf->path(); }
  };

  Tensor read(const Entry& entry) const;

  const Entry& find(std::string_view name) const;

  std::shared_ptr<const std::vector<SafetensorsFile>> files_;
  std::shared_ptr<const std::vector<GgufFile>> gguf_files_;
  std::map<std::string, Entry, std::less<>> tensors_;
  std::string description_;
};

}  // namespace canvas
