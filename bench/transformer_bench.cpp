// Times QwenImageTransformer2DModel forwards on a checkpoint folder (real or from
// canvas-synthetic-checkpoint) and writes the figures as JSON.
//
//   canvas-bench-transformer --model DIR --device cuda --res 1024,1328 --batch 1,2 --text 128 --json out.json
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "backend/backend.h"
#include "models/qwen_image_transformer.h"

#ifdef CANVAS_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace {

using namespace canvas;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Tensor random_tensor(const Shape& shape, DType dtype, Device device, uint32_t seed) {
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  uint32_t state = seed * 2654435761u + 1;
  for (float& value : values) {
    state = state * 1664525u + 1013904223u;
    value = static_cast<float>(state >> 8) / static_cast<float>(1 << 24) * 2.0f - 1.0f;
  }
  return Tensor::from_floats(values, shape).to(dtype).to(device);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time Qwen-Image transformer forwards"};
  std::string model, device_name = "cuda", json_path, precision = "bf16";
  std::vector<int64_t> resolutions{1024}, batches{1};
  int64_t text_tokens = 128;
  int iterations = 5;
  app.add_option("--model", model, "Folder holding transformer/ (config.json + weights)")->required();
  app.add_option("--device", device_name)->capture_default_str();
  app.add_option("--precision", precision, "bf16 or f32")->capture_default_str();
  app.add_option("--res", resolutions, "Square image sides in pixels")->delimiter(',');
  app.add_option("--batch", batches, "Batch sizes")->delimiter(',');
  app.add_option("--text", text_tokens, "Text tokens")->capture_default_str();
  app.add_option("--iters", iterations, "Timed forwards per case (median reported)")->capture_default_str();
  app.add_option("--json", json_path, "Where to write the results");
  CLI11_PARSE(app, argc, argv);
  try {
    Device device = device_name == "cpu" ? Device::cpu() : Device::cuda(0);
    if (device.is_cuda()) {
#ifdef CANVAS_HAS_CUDA
      check(register_cuda_backends() > 0, "no CUDA device");
#else
      throw Error("this build has no CUDA backend");
#endif
    }
    DType dtype = precision == "f32" ? DType::F32 : DType::BF16;
    Backend& backend = backend_for(device);
    Allocator& allocator = allocator_for(device);
    nlohmann::json results = {
        {"device", device.str()}, {"precision", precision}, {"text_tokens", text_tokens}};

    Clock::time_point load_start = Clock::now();
    std::filesystem::path folder = std::filesystem::path(model) / "transformer";
    QwenImageTransformerConfig config = QwenImageTransformerConfig::from_file(folder / "config.json");
    QwenImageTransformer2DModel transformer(config, WeightSource::open(folder));
    nn::place_weights(transformer, "transformer", device, dtype);
    backend.synchronize();
    results["load_s"] = seconds_since(load_start);
    results["weights_bytes"] = allocator.in_use();
    results["num_layers"] = config.num_layers;

    for (int64_t resolution : resolutions) {
      for (int64_t batch : batches) {
        const int64_t side = resolution / 16;
        Tensor hidden = random_tensor({batch, side * side, config.in_channels}, dtype, device, 1);
        Tensor text = random_tensor({batch, text_tokens, config.joint_attention_dim}, dtype, device, 2);
        Tensor timestep = Tensor::from_floats(std::vector<float>(static_cast<size_t>(batch), 0.5f), {batch});
        allocator.reset_peak();
        Clock::time_point first_start = Clock::now();
        OwnerScope owner({"transformer", -1, MemoryRole::Activations});
        Tensor sample = transformer.forward(hidden, text, {}, timestep, {{1, side, side}});
        backend.synchronize();
        double first_s = seconds_since(first_start);
        std::vector<double> times;
        for (int i = 0; i < iterations; ++i) {
          Clock::time_point start = Clock::now();
          sample = transformer.forward(hidden, text, {}, timestep, {{1, side, side}});
          backend.synchronize();
          times.push_back(seconds_since(start));
        }
        std::sort(times.begin(), times.end());
        std::vector<float> values = sample.slice(1, 0, 1).to_floats();
        bool finite = std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
        nlohmann::json entry = {{"res", resolution},
                                {"batch", batch},
                                {"image_tokens", side * side},
                                {"first_s", first_s},
                                {"fwd_s", times[times.size() / 2]},
                                {"min_s", times.front()},
                                {"peak_bytes", allocator.peak()},
                                {"output_finite", finite}};
        results["cases"].push_back(entry);
        std::printf("RESULT %s\n", entry.dump().c_str());
        std::fflush(stdout);
      }
    }
    if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
    std::printf("SUMMARY %s\n", results.dump().c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
