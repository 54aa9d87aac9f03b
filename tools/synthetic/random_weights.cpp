#include "synthetic/random_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "backend/meta/meta_backend.h"
#include "io/safetensors.h"

namespace canvas::synthetic {

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Uniform values with the standard deviation of a 1/sqrt(fan_in) init, so activations stay finite
// through every block; norm gains are 1 and biases small.
void fill_random(Tensor& tensor, const std::string& name, uint64_t seed) {
  const int64_t count = tensor.numel();
  const bool is_norm =
      ends_with(name, ".gamma") || (name.find("norm") != std::string::npos && tensor.ndim() == 1);
  const bool is_bias = ends_with(name, ".bias");
  // Everything after the output axis feeds one output: the input features of a linear layer, the input
  // channels times the kernel taps of a conv.
  const float fan_in = tensor.ndim() >= 2 ? static_cast<float>(count / tensor.dim(0)) : 1.0f;
  const float half_width = is_bias ? 0.02f : std::sqrt(3.0f / fan_in);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const int64_t begin = count * t / threads, end = count * (t + 1) / threads;
      uint64_t state = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(begin) + 1;
      std::vector<float> values(4096);
      for (int64_t start = begin; start < end; start += 4096) {
        int64_t chunk = std::min<int64_t>(4096, end - start);
        for (int64_t i = 0; i < chunk; ++i) {
          // xorshift64*: fast and plenty for random weights.
          state ^= state >> 12;
          state ^= state << 25;
          state ^= state >> 27;
          float unit =
              static_cast<float>((state * 0x2545F4914F6CDD1Dull) >> 40) / static_cast<float>(1 << 24);
          values[i] = is_norm ? 1.0f : (2.0f * unit - 1.0f) * half_width;
        }
        convert_from_f32(values.data(), tensor.dtype(),
                         static_cast<char*>(tensor.raw_data()) + start * element_size(tensor.dtype()), chunk);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
}

}  // namespace

void write_json(const std::filesystem::path& path, const nlohmann::json& json) {
  std::ofstream stream(path);
  check(static_cast<bool>(stream << json.dump(2) << "\n"), "cannot write " + path.string());
}

WrittenCheckpoint write_random_checkpoint(const std::filesystem::path& folder,
                                          const std::vector<std::pair<std::string, Shape>>& tensors,
                                          const ShardedCheckpoint& layout) {
  std::filesystem::create_directories(folder);
  if (layout.zeros) register_meta_backend();
  WrittenCheckpoint written;
  for (const auto& [name, shape] : tensors) {
    written.parameters += shape_numel(shape);
    written.bytes += storage_bytes(layout.dtype, shape_numel(shape));
  }
  const int64_t shard_limit = layout.shard_limit_bytes > 0 ? layout.shard_limit_bytes : written.bytes;

  std::vector<std::vector<std::pair<std::string, Shape>>> shards(1);
  int64_t shard_bytes = 0;
  for (const auto& entry : tensors) {
    int64_t bytes = storage_bytes(layout.dtype, shape_numel(entry.second));
    if (shard_bytes > 0 && shard_bytes + bytes > shard_limit) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(entry);
    shard_bytes += bytes;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char shard_suffix[32];
    std::snprintf(shard_suffix, sizeof(shard_suffix), "-%05zu-of-%05zu", s + 1, shards.size());
    std::string file_name = layout.file_stem + (shards.size() == 1 ? "" : shard_suffix) + ".safetensors";
    std::vector<std::pair<std::string, Tensor>> shard_tensors;
    for (const auto& [tensor_name, shape] : shards[s]) {
      Tensor tensor = Tensor::empty(shape, layout.dtype, layout.zeros ? Device::meta() : Device::cpu());
      if (!layout.zeros) fill_random(tensor, tensor_name, layout.seed + shard_tensors.size() + 7919 * s);
      shard_tensors.emplace_back(tensor_name, std::move(tensor));
      weight_map[tensor_name] = file_name;
    }
    write_safetensors(folder / file_name, shard_tensors, {{"format", "pt"}});
    std::fprintf(stderr, "wrote %s (%zu tensors)\n", (folder / file_name).c_str(), shard_tensors.size());
  }
  if (shards.size() > 1) {
    write_json(folder / (layout.file_stem + ".safetensors.index.json"),
               {{"metadata", {{"total_size", written.bytes}}}, {"weight_map", weight_map}});
  }
  written.files = shards.size();
  return written;
}

}  // namespace canvas::synthetic
