#include "planning/machine_profile.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "io/json_config.h"
#include "memory/host_memory.h"
#include "util/json_cache.h"

namespace canvas {

namespace {

using nlohmann::json;

// Bumped when a measurement changes what it measures, so older cache entries are measured over.
constexpr int kCacheVersion = 4;
constexpr const char* kCacheFile = "machine_profiles.json";

// A timed round repeats the work until it lasts this long, so timer and synchronization overhead stay
// small next to the work even where one run takes microseconds (a GEMM on a GPU).
constexpr double kMinRoundSeconds = 0.01;
constexpr int kRounds = 5;

// Seconds per run of `work`, the median of kRounds rounds. One untimed run first absorbs one-time costs:
// page faults on fresh buffers, GEMM algorithm selection, GPU clocks ramping up.
double seconds_per_run(Backend& backend, const std::function<void()>& work) {
  const auto round = [&](int runs) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < runs; ++i) work();
    backend.synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  round(1);
  int runs = 1;
  double seconds = round(runs);
  while (seconds < kMinRoundSeconds) seconds = round(runs *= 2);
  std::vector<double> per_run = {seconds / runs};
  while (static_cast<int>(per_run.size()) < kRounds) per_run.push_back(round(runs) / runs);
  std::nth_element(per_run.begin(), per_run.begin() + kRounds / 2, per_run.end());
  return per_run[kRounds / 2];
}

// Nonzero inputs in [-0.5, 0.5): GPUs draw less power on zeros and would clock higher than in real use.
Tensor patterned(const Shape& shape, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, DType::F32);
  float* values = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i) values[i] = static_cast<float>(i % 251) / 251.0f - 0.5f;
  return host.to(dtype).to(device);
}

double measure_gemm_flops_per_s(Backend& backend, DType dtype) {
  // On a GPU, a transformer projection at image-token scale; on the CPU a smaller product, so that the
  // measurement stays well under a second on two cores.
  const bool cpu = backend.device().is_cpu();
  const int64_t m = cpu ? 512 : 4096, k = cpu ? 1024 : 3072, n = cpu ? 1024 : 3072;
  const Tensor x = patterned({m, k}, dtype, backend.device());
  const Tensor weight = patterned({n, k}, dtype, backend.device());
  const double seconds = seconds_per_run(backend, [&] { (void)ops::linear(x, weight); });
  return 2.0 * static_cast<double>(m * n * k) / seconds;
}

double measure_attention_scores_per_s(Backend& backend, DType dtype) {
  // A head of 16 channels, as a small model has: the cost per query-key pair, not per multiply-add. On the
  // CPU 512 tokens keep the measurement near a quarter of a second; longer sequences score up to about 3x
  // faster there, so this errs towards predicting slow steps.
  const int64_t heads = 1, tokens = backend.device().is_cpu() ? 512 : 4096, head_dim = 16;
  const Tensor q = patterned({1, heads, tokens, head_dim}, dtype, backend.device());
  const double seconds = seconds_per_run(backend, [&] { (void)ops::attention(q, q, q, {}, 0.25f); });
  return static_cast<double>(heads * tokens * tokens) / seconds;
}

// `backend` (the device side's) copying all of `source` into `destination`.
double transfer_bytes_per_s(Backend& backend, const Tensor& source, Tensor& destination) {
  const double seconds = seconds_per_run(backend, [&] { backend.transfer(source, destination); });
  return static_cast<double>(source.nbytes()) / seconds;
}

MachineProfile measure(Device device, DType activation_dtype, const std::string& key) {
  OwnerScope scope(MemoryOwner{"machine_profile", -1, MemoryRole::Scratch});
  Backend& backend = backend_for(device);
  MachineProfile profile;
  profile.key = key;
  profile.gemm_flops_per_s = measure_gemm_flops_per_s(backend, activation_dtype);
  profile.attention_scores_per_s = measure_attention_scores_per_s(backend, activation_dtype);

  // Far past the CPU caches; on a GPU machine as large as a transformer block's weights, the unit of
  // weight streaming.
  const int64_t bytes = (device.is_cpu() ? int64_t{64} : int64_t{256}) << 20;
  const Tensor pageable = Tensor::zeros({bytes}, DType::U8);
  Tensor host_copy = Tensor::zeros({bytes}, DType::U8);
  profile.host_memcpy_bytes_per_s = transfer_bytes_per_s(backend_for(Device::cpu()), pageable, host_copy);
  if (device.is_cpu()) {
    profile.host_to_device_pinned_bytes_per_s = profile.host_memcpy_bytes_per_s;
    profile.host_to_device_pageable_bytes_per_s = profile.host_memcpy_bytes_per_s;
    profile.host_to_device_staged_bytes_per_s = profile.host_memcpy_bytes_per_s;
    return profile;
  }

  Tensor on_device = Tensor::empty({bytes}, DType::U8, device);
  profile.host_to_device_pageable_bytes_per_s = transfer_bytes_per_s(backend, pageable, on_device);
  Allocator* pinned_allocator = registered_pinned_host_allocator();
  check(pinned_allocator != nullptr,
        "machine_profile: no pinned host allocator is registered for " + device.str());
  Tensor pinned = Tensor::from_buffer(pinned_allocator->allocate(bytes), {bytes}, DType::U8);
  backend_for(Device::cpu()).transfer(pageable, pinned);
  profile.host_to_device_pinned_bytes_per_s = transfer_bytes_per_s(backend, pinned, on_device);
  std::unique_ptr<UploadQueue> queue = backend.create_upload_queue(bytes);
  const double staged_seconds = seconds_per_run(backend, [&] {
    queue->compute_wait(queue->upload({{pageable, on_device}}, nullptr, /*times=*/nullptr));
  });
  profile.host_to_device_staged_bytes_per_s = static_cast<double>(bytes) / staged_seconds;
  return profile;
}

json empty_cache() {
  return {{"version", kCacheVersion}, {"profiles", json::object()}};
}

// The cache file's contents, or an empty cache when the file is missing, corrupt or of another version.
json read_cache(const std::filesystem::path& file) {
  json cache = read_json_cache(file);
  const bool usable = cache.contains("version") && cache["version"] == kCacheVersion &&
                      cache.contains("profiles") && cache["profiles"].is_object();
  return usable ? cache : empty_cache();
}

std::optional<MachineProfile> cached_profile(const json& cache, const std::string& key) {
  const json& profiles = cache.at("profiles");
  const auto entry = profiles.find(key);
  if (entry == profiles.end()) return std::nullopt;
  try {
    MachineProfile profile = MachineProfile::from_json(*entry);
    if (profile.key == key) return profile;
  } catch (const Error&) {
    // A damaged entry is measured over like a missing one.
  }
  return std::nullopt;
}

// Readers (other processes included) see the old cache or the new one. Failures leave the cache as it
// was: it only saves time.
double positive_figure(const json& object, const char* name) {
  const double value = config_float(object, name, "machine profile");
  check(std::isfinite(value) && value > 0, std::string("machine profile: ") + name +
                                               " must be positive and finite, got " + std::to_string(value));
  return value;
}

}  // namespace

json MachineProfile::to_json() const {
  return {{"key", key},
          {"gemm_flops_per_s", gemm_flops_per_s},
          {"attention_scores_per_s", attention_scores_per_s},
          {"host_to_device_pinned_bytes_per_s", host_to_device_pinned_bytes_per_s},
          {"host_to_device_pageable_bytes_per_s", host_to_device_pageable_bytes_per_s},
          {"host_to_device_staged_bytes_per_s", host_to_device_staged_bytes_per_s},
          {"host_memcpy_bytes_per_s", host_memcpy_bytes_per_s}};
}

MachineProfile MachineProfile::from_json(const json& object) {
  check(object.is_object(), "machine profile: expected a JSON object, got " + object.dump());
  MachineProfile profile;
  profile.key = config_string(object, "key", "machine profile");
  profile.gemm_flops_per_s = positive_figure(object, "gemm_flops_per_s");
  profile.attention_scores_per_s = positive_figure(object, "attention_scores_per_s");
  profile.host_to_device_pinned_bytes_per_s = positive_figure(object, "host_to_device_pinned_bytes_per_s");
  profile.host_to_device_pageable_bytes_per_s =
      positive_figure(object, "host_to_device_pageable_bytes_per_s");
  profile.host_to_device_staged_bytes_per_s = positive_figure(object, "host_to_device_staged_bytes_per_s");
  profile.host_memcpy_bytes_per_s = positive_figure(object, "host_memcpy_bytes_per_s");
  return profile;
}

std::filesystem::path canvas_cache_dir() {
  if (const char* dir = std::getenv("CANVAS_CACHE_DIR"); dir && *dir) return dir;
  // The XDG spec has relative values ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && std::filesystem::path(xdg).is_absolute()) {
    return std::filesystem::path(xdg) / "ethereal-canvas";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::filesystem::path(home) / ".cache" / "ethereal-canvas";
  }
  return {};
}

MachineProfile machine_profile(Device device, DType activation_dtype) {
  check(device.is_cpu() || device.is_cuda(), "machine_profile: " + device.str() + " has nothing to measure");
  // One at a time: measurements running side by side would slow each other down.
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const std::string key =
      backend_for(device).description() + ", " + std::string(dtype_name(activation_dtype));
  const std::filesystem::path dir = canvas_cache_dir();
  json cache = dir.empty() ? empty_cache() : read_cache(dir / kCacheFile);
  if (std::optional<MachineProfile> cached = cached_profile(cache, key)) return *cached;

  MachineProfile profile = measure(device, activation_dtype, key);
  if (!dir.empty()) {
    cache["profiles"][key] = profile.to_json();
    // An unwritable cache costs only the next run's measurement.
    write_json_cache(dir / kCacheFile, cache);
  }
  return profile;
}

double interconnect_bytes_per_s(Device from, Device to) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, std::string>, double> measured;
  std::lock_guard lock(mutex);
  const auto key = std::make_pair(from.str(), to.str());
  if (auto found = measured.find(key); found != measured.end()) return found->second;
  OwnerScope scope(MemoryOwner{"machine_profile", -1, MemoryRole::Scratch});
  // 16 MiB: past the copy's fixed costs, within the smallest pools.
  const Tensor source = patterned({int64_t{8} << 20}, DType::BF16, from);
  Backend& receiver = backend_for(to);
  const double seconds = seconds_per_run(receiver, [&] { (void)source.to(to); });
  return measured[key] = static_cast<double>(source.nbytes()) / seconds;
}

}  // namespace canvas
