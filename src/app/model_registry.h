// The models and LoRAs a server offers: only what lies in the folders it was started with, so a request
// names a model or LoRA by id and can never reach another path.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/qwen_image_model.h"

namespace canvas::app {

struct ModelEntry {
  // The folder's or file's name; a Hugging Face cache entry models--Org--Name is "Org/Name".
  std::string id;
  std::filesystem::path path;
  QwenImagePipelineKind kind = QwenImagePipelineKind::TextToImage;
  std::string pipeline_class;  // model_index.json's, e.g. "QwenImagePipeline"
  // Read when the folder was scanned: requests are checked against them before they queue.
  std::shared_ptr<const QwenImageConfigs> configs;
};

class ModelRegistry {
 public:
  // Each folder or .safetensors file directly under a folder of `model_folders` whose configs read as a
  // Qwen-Image model is one model; the others are reported in skipped(). LoRAs are the .safetensors files
  // directly under `lora_folder`, when given.
  ModelRegistry(std::vector<std::filesystem::path> model_folders,
                std::optional<std::filesystem::path> lora_folder);

  // Reads the folders again (models added or removed since).
  void rescan();
  std::vector<ModelEntry> models() const;
  // "PATH: why" for every entry of the folders that is not a model.
  std::vector<std::string> skipped() const;
  // The model of `id`, or the first model for an empty id. Throws RequestError (404) naming the ids there
  // are.
  ModelEntry find(const std::string& id) const;
  // The LoRA file of `name` (a file name in the LoRA folder, with or without .safetensors). Throws
  // RequestError (404) for a name that is not such a file: a path, "..", or a missing one.
  std::filesystem::path lora_path(const std::string& name) const;
  // The LoRA names the folder holds.
  std::vector<std::string> loras() const;

 private:
  std::vector<std::filesystem::path> model_folders_;
  std::optional<std::filesystem::path> lora_folder_;
  mutable std::mutex mutex_;
  std::vector<ModelEntry> models_;
  std::vector<std::string> skipped_;
};

}  // namespace canvas::app
