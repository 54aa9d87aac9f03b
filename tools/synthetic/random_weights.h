// Random-valued checkpoints laid out as save_pretrained writes them: one file, or shards plus an index.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace canvas::synthetic {

struct ShardedCheckpoint {
  // The file name without ".safetensors": "diffusion_pytorch_model" for diffusers, "model" for
  // transformers.
  std::string file_stem;
  DType dtype = DType::BF16;
  // Largest shard in bytes; 0 writes a single file.
  int64_t shard_limit_bytes = 0;
  uint64_t seed = 0;
  // All-zero values written as sparse files: the full layout in seconds, without the disk space.
  bool zeros = false;
};

struct WrittenCheckpoint {
  int64_t parameters = 0;
  int64_t bytes = 0;
  size_t files = 0;
};

// Writes `tensors` into `folder` in declaration order, as the Hub's checkpoints are grouped.
WrittenCheckpoint write_random_checkpoint(const std::filesystem::path& folder,
                                          const std::vector<std::pair<std::string, Shape>>& tensors,
                                          const ShardedCheckpoint& layout);

void write_json(const std::filesystem::path& path, const nlohmann::json& json);

}  // namespace canvas::synthetic
