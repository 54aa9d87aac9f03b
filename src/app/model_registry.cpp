#include "app/model_registry.h"

#include <algorithm>

#include "app/job_spec.h"

namespace canvas::app {

namespace fs = std::filesystem;

namespace {

std::string model_id(const fs::path& path) {
  const std::string name = path.filename().string();
  // Hugging Face's cache names an entry models--Org--Name.
  if (!name.starts_with("models--")) return name;
  const std::string repository = name.substr(8);
  const size_t separator = repository.find("--");
  if (separator == std::string::npos) return repository;
  return repository.substr(0, separator) + "/" + repository.substr(separator + 2);
}

}  // namespace

ModelRegistry::ModelRegistry(std::vector<fs::path> model_folders, std::optional<fs::path> lora_folder)
    : model_folders_(std::move(model_folders)), lora_folder_(std::move(lora_folder)) {
  for (const fs::path& folder : model_folders_)
    check(fs::is_directory(folder), "--models " + folder.string() + " is not a folder");
  if (lora_folder_)
    check(fs::is_directory(*lora_folder_), "--loras " + lora_folder_->string() + " is not a folder");
  rescan();
}

void ModelRegistry::rescan() {
  std::vector<ModelEntry> models;
  std::vector<std::string> skipped;
  for (const fs::path& folder : model_folders_) {
    std::vector<fs::path> entries;
    std::error_code error;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with(".")) continue;
      if (entry.is_directory() || entry.path().extension() == ".safetensors") entries.push_back(entry.path());
    }
    std::sort(entries.begin(), entries.end());
    for (const fs::path& path : entries) {
      try {
        auto configs = std::make_shared<const QwenImageConfigs>(read_qwen_image_configs(path));
        ModelEntry entry{model_id(path), path, configs->kind, configs->layout.pipeline_class, configs};
        const bool taken = std::any_of(models.begin(), models.end(),
                                       [&](const ModelEntry& other) { return other.id == entry.id; });
        if (taken) {
          skipped.push_back(path.string() + ": another folder already offers the id " + entry.id);
        } else {
          models.push_back(std::move(entry));
        }
      } catch (const std::exception& failure) {
        skipped.push_back(path.string() + ": " + failure.what());
      }
    }
  }
  std::lock_guard lock(mutex_);
  models_ = std::move(models);
  skipped_ = std::move(skipped);
}

std::vector<ModelEntry> ModelRegistry::models() const {
  std::lock_guard lock(mutex_);
  return models_;
}

std::vector<std::string> ModelRegistry::skipped() const {
  std::lock_guard lock(mutex_);
  return skipped_;
}

ModelEntry ModelRegistry::find(const std::string& id) const {
  std::lock_guard lock(mutex_);
  if (models_.empty()) throw RequestError(404, "model", "the server has no models: see its --models folders");
  if (id.empty()) return models_.front();
  std::string ids;
  for (const ModelEntry& entry : models_) {
    if (entry.id == id) return entry;
    ids += (ids.empty() ? "" : ", ") + entry.id;
  }
  throw RequestError(404, "model", "\"model\": there is no model \"" + id + "\"; the server has " + ids);
}

fs::path ModelRegistry::lora_path(const std::string& name) const {
  if (!lora_folder_) throw RequestError(404, "loras", "\"loras\": the server has no LoRA folder (--loras)");
  // A name, never a path: nothing outside the folder can be reached.
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.starts_with(".")) {
    throw RequestError(400, "loras",
                       "\"loras\": \"" + name + "\" is not a LoRA name (a file name in the LoRA folder)");
  }
  fs::path path = *lora_folder_ / name;
  if (path.extension() != ".safetensors") path += ".safetensors";
  std::error_code error;
  if (!fs::is_regular_file(path, error))
    throw RequestError(404, "loras",
                       "\"loras\": there is no LoRA \"" + name + "\" (GET /v1/loras lists them)");
  return path;
}

std::vector<std::string> ModelRegistry::loras() const {
  std::vector<std::string> names;
  if (!lora_folder_) return names;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(*lora_folder_, error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(".") && entry.path().extension() == ".safetensors" && entry.is_regular_file())
      names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace canvas::app
