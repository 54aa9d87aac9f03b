// Writes a Qwen-Image-shaped diffusers transformer with random weights, so loading, memory use and speed
// can be measured at full size without the real weights. The shapes come from the model's own
// parameter list; the config is the published Qwen-Image / Qwen-Image-2512 one unless overridden.
//
//   canvas-synthetic-checkpoint --output DIR [--layers 60] [--shard-gib 5] [--dtype bf16] [--seed 0]
//
// DIR/transformer/ receives config.json and either one model file or shards plus
// diffusion_pytorch_model.safetensors.index.json, as on the Hub.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "io/safetensors.h"
#include "models/qwen_image_transformer.h"

namespace {

using namespace canvas;

nlohmann::json transformer_config_json(int64_t layers) {
  return {{"_class_name", "QwenImageTransformer2DModel"},
          {"_diffusers_version", "0.36.0"},
          {"attention_head_dim", 128},
          {"axes_dims_rope", {16, 56, 56}},
          {"guidance_embeds", false},
          {"in_channels", 64},
          {"joint_attention_dim", 3584},
          {"num_attention_heads", 24},
          {"num_layers", layers},
          {"out_channels", 16},
          {"patch_size", 2}};
}

// Uniform values with the standard deviation of a 1/sqrt(fan_in) init, so activations stay finite
// through every block; norm gains are 1 and biases small.
void fill_random(Tensor& tensor, const std::string& name, uint64_t seed) {
  const int64_t count = tensor.numel();
  const bool is_norm = name.find("norm") != std::string::npos && tensor.ndim() == 1;
  const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  const float fan_in = tensor.ndim() == 2 ? static_cast<float>(tensor.dim(1)) : 1.0f;
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

void write_json(const std::filesystem::path& path, const nlohmann::json& json) {
  std::ofstream stream(path);
  check(static_cast<bool>(stream << json.dump(2) << "\n"), "cannot write " + path.string());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a full-size Qwen-Image transformer checkpoint with random weights"};
  std::string output, dtype_name_option = "bf16";
  int64_t layers = 60;
  double shard_gib = 5.0;
  uint64_t seed = 0;
  app.add_option("--output", output, "Folder to write (created)")->required();
  app.add_option("--layers", layers, "Transformer blocks (60 in Qwen-Image)")->capture_default_str();
  app.add_option("--shard-gib", shard_gib, "Largest shard in GiB; 0 writes a single file")
      ->capture_default_str();
  app.add_option("--dtype", dtype_name_option, "bf16, f16 or f32")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the random values")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    DType dtype;
    check(dtype_from_safetensors(dtype_name_option == "bf16"  ? "BF16"
                                 : dtype_name_option == "f16" ? "F16"
                                                              : "F32",
                                 dtype),
          "unknown dtype " + dtype_name_option);
    check(layers > 0 && layers <= 1000, "--layers must be between 1 and 1000");
    std::filesystem::path folder = std::filesystem::path(output) / "transformer";
    std::filesystem::create_directories(folder);
    nlohmann::json config_json = transformer_config_json(layers);
    write_json(folder / "config.json", config_json);
    QwenImageTransformerConfig config = QwenImageTransformerConfig::from_json(config_json, "config.json");

    auto parameters = QwenImageTransformer2DModel::parameter_shapes(config);
    int64_t total_bytes = 0;
    for (const auto& [name, shape] : parameters) total_bytes += storage_bytes(dtype, shape_numel(shape));
    const int64_t shard_limit = shard_gib > 0 ? static_cast<int64_t>(shard_gib * (1 << 30)) : total_bytes;

    // Group tensors into shards in declaration order, as save_pretrained does.
    std::vector<std::vector<std::pair<std::string, Shape>>> shards(1);
    int64_t shard_bytes = 0;
    for (const auto& entry : parameters) {
      int64_t bytes = storage_bytes(dtype, shape_numel(entry.second));
      if (shard_bytes > 0 && shard_bytes + bytes > shard_limit) {
        shards.emplace_back();
        shard_bytes = 0;
      }
      shards.back().push_back(entry);
      shard_bytes += bytes;
    }
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      char file_name[96];
      std::snprintf(file_name, sizeof(file_name), "diffusion_pytorch_model-%05zu-of-%05zu.safetensors", s + 1,
                    shards.size());
      std::string name = shards.size() == 1 ? "diffusion_pytorch_model.safetensors" : file_name;
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (const auto& [tensor_name, shape] : shards[s]) {
        Tensor tensor = Tensor::empty(shape, dtype);
        fill_random(tensor, tensor_name, seed + tensors.size() + 7919 * s);
        tensors.emplace_back(tensor_name, std::move(tensor));
        weight_map[tensor_name] = name;
      }
      write_safetensors(folder / name, tensors, {{"format", "pt"}});
      std::fprintf(stderr, "wrote %s (%zu tensors)\n", (folder / name).c_str(), tensors.size());
    }
    if (shards.size() > 1) {
      write_json(folder / "diffusion_pytorch_model.safetensors.index.json",
                 {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}});
    }
    int64_t count = 0;
    for (const auto& [name, shape] : parameters) count += shape_numel(shape);
    std::fprintf(stderr, "transformer: %lld parameters, %.2f GB in %s, %zu file(s)\n",
                 static_cast<long long>(count), static_cast<double>(total_bytes) / 1e9,
                 dtype_name_option.c_str(), shards.size());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
