#include "app/residency.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <sstream>

#include "planning/machine_profile.h"
#include "util/json_cache.h"
#include "util/sha256.h"

namespace canvas::app {

namespace {

// The weight files of a component.
std::vector<std::filesystem::path> weight_files(const QwenImageConfigs& configs, const char* component) {
  std::vector<std::filesystem::path> files;
  if (!configs.layout.has(component)) return files;
  const std::filesystem::path weights = configs.layout.component(component).weights;
  std::error_code error;
  if (std::filesystem::is_directory(weights, error)) {
    for (const auto& entry : std::filesystem::directory_iterator(weights, error))
      if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  } else {
    files.push_back(weights);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The (device, inode) of every weight file of a component: equal sets are the same files, whatever the
// paths (a Hugging Face cache links its snapshots to shared blobs).
std::set<std::pair<uint64_t, uint64_t>> file_identities(const QwenImageConfigs& configs,
                                                        const char* component) {
  std::set<std::pair<uint64_t, uint64_t>> identities;
  for (const std::filesystem::path& file : weight_files(configs, component)) {
    struct stat status {};
    if (::stat(file.c_str(), &status) == 0)
      identities.insert({static_cast<uint64_t>(status.st_dev), static_cast<uint64_t>(status.st_ino)});
  }
  return identities;
}

// What a component's digest is remembered by: each weight file's resolved path, size and modification time.
std::string files_fingerprint(const QwenImageConfigs& configs, const char* component) {
  std::ostringstream fingerprint;
  fingerprint << component;
  for (const std::filesystem::path& file : weight_files(configs, component)) {
    struct stat status {};
    if (::stat(file.c_str(), &status) != 0) return "";
    std::error_code error;
    fingerprint << '|' << std::filesystem::canonical(file, error).string() << ':' << status.st_size << ':'
                << status.st_mtim.tv_sec << '.' << status.st_mtim.tv_nsec;
  }
  return fingerprint.str();
}

// Every tensor's name, dtype and shape, in the network's order: equal for networks of one architecture and
// storage, before any byte is read.
template <typename Network>
std::string network_signature(const Network& network) {
  Network copy = network;
  std::string signature;
  copy.visit([&](const std::string& name, Tensor& weight) {
    signature += name + ":" + std::string(dtype_name(weight.dtype())) + ":" + shape_str(weight.shape()) + ";";
  });
  return signature;
}

// The SHA-256 of every tensor's bytes, in the network's order. Reading them all takes a while (about a
// minute for a 16 GB text encoder), so the digest is remembered in network_digests.json in the cache
// folder, by the files' fingerprint.
template <typename Network>
std::string network_digest(const Network& network, const QwenImageConfigs& configs, const char* component) {
  const std::filesystem::path folder = canvas_cache_dir();
  const std::string fingerprint = files_fingerprint(configs, component);
  const bool remembered = !folder.empty() && !fingerprint.empty();
  const std::filesystem::path cache_file = folder / "network_digests.json";
  nlohmann::json cache = remembered ? read_json_cache(cache_file) : nlohmann::json::object();
  if (remembered && cache.contains(fingerprint) && cache[fingerprint].is_string())
    return cache[fingerprint].get<std::string>();
  Network copy = network;
  Sha256 digest;
  copy.visit([&](const std::string& name, Tensor& weight) {
    const Tensor host = weight.to(Device::cpu()).contiguous();
    digest.update({static_cast<const uint8_t*>(host.raw_data()), static_cast<size_t>(host.nbytes())});
  });
  const std::string hex = digest_hex(digest.finish());
  if (remembered) {
    cache[fingerprint] = hex;
    write_json_cache(cache_file, cache);
  }
  return hex;
}

// Whether two loaded networks hold the same weights: the same files, else the same configuration, tensor
// layout and bytes.
template <typename Network>
bool same_network(const Network& a, const QwenImageConfigs& a_configs, const Network& b,
                  const QwenImageConfigs& b_configs, const char* component) {
  if (&a == &b) return true;
  if (!(a.config() == b.config())) return false;
  const auto a_files = file_identities(a_configs, component);
  if (!a_files.empty() && a_files == file_identities(b_configs, component)) return true;
  return network_signature(a) == network_signature(b) &&
         network_digest(a, a_configs, component) == network_digest(b, b_configs, component);
}

}  // namespace

ModelResidency::ModelResidency(Device device, std::optional<DType> precision, size_t max_loaded)
    : device_(device), precision_(precision), max_loaded_(std::max<size_t>(max_loaded, 1)) {}

std::vector<std::string> ModelResidency::share_networks(QwenImageModel& model) const {
  std::vector<std::string> shared;
  for (const Loaded& other : loaded_) {
    const QwenImageModel& loaded = *other.model;
    if (model.activation_dtype != loaded.activation_dtype || model.vae_dtype != loaded.vae_dtype) continue;
    if (model.text_encoder != loaded.text_encoder &&
        same_network(*model.text_encoder, model.configs, *loaded.text_encoder, loaded.configs,
                     "text_encoder")) {
      model.text_encoder = loaded.text_encoder;
      shared.push_back("text_encoder (with " + other.entry.id + ")");
    }
    if (model.vae != loaded.vae &&
        same_network(*model.vae, model.configs, *loaded.vae, loaded.configs, "vae")) {
      model.vae = loaded.vae;
      shared.push_back("vae (with " + other.entry.id + ")");
    }
  }
  return shared;
}

std::shared_ptr<const QwenImageModel> ModelResidency::acquire(const ModelEntry& entry) {
  std::lock_guard lock(mutex_);
  ++uses_;
  for (Loaded& loaded : loaded_) {
    if (loaded.entry.path == entry.path) {
      loaded.last_used = uses_;
      return loaded.model;
    }
  }
  auto model = std::make_shared<QwenImageModel>(load_qwen_image(entry.path, device_, precision_));
  std::vector<std::string> shared = share_networks(*model);
  if (loaded_.size() >= max_loaded_) {
    // Jobs still running on the evicted model keep it alive through their own reference.
    auto oldest = std::min_element(loaded_.begin(), loaded_.end(), [](const Loaded& a, const Loaded& b) {
      return a.last_used < b.last_used;
    });
    loaded_.erase(oldest);
  }
  loaded_.push_back({entry, model, std::move(shared), uses_});
  return model;
}

nlohmann::json ModelResidency::describe() const {
  std::lock_guard lock(mutex_);
  nlohmann::json models = nlohmann::json::array();
  for (const Loaded& loaded : loaded_) {
    models.push_back({{"id", loaded.entry.id},
                      {"path", loaded.entry.path.string()},
                      {"activation_dtype", dtype_name(loaded.model->activation_dtype)},
                      {"shared", loaded.shared}});
  }
  return models;
}

void ModelResidency::note_plan(std::vector<std::string> lines) {
  std::lock_guard lock(mutex_);
  live_plan_ = std::move(lines);
}

std::vector<std::string> ModelResidency::live_plan() const {
  std::lock_guard lock(mutex_);
  return live_plan_;
}

void ModelResidency::note_recovery(std::string text) {
  constexpr size_t kKept = 50;
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::lock_guard lock(mutex_);
  recoveries_.emplace_back(now, std::move(text));
  if (recoveries_.size() > kKept) recoveries_.erase(recoveries_.begin());
}

nlohmann::json ModelResidency::recent_recoveries() const {
  std::lock_guard lock(mutex_);
  nlohmann::json recoveries = nlohmann::json::array();
  for (const auto& [time, text] : recoveries_) recoveries.push_back({{"time", time}, {"text", text}});
  return recoveries;
}

}  // namespace canvas::app
