// The models a server keeps loaded, and what they share. Qwen-Image-2512 and Qwen-Image-Edit-2511 carry the
// same text encoder language model and VAE in files of their own: a network whose tensors are identical to
// one a loaded model already has (found from the files' identity, else from the tensors' SHA-256) is held
// once, mapped from one file.
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "app/model_registry.h"
#include "pipeline/weight_arrangement.h"

namespace canvas::app {

class ModelResidency {
 public:
  // Models load onto `device` with activations in `precision` (the device's default when none). At most
  // `max_loaded` stay loaded; the least recently used goes first.
  ModelResidency(Device device, std::optional<DType> precision, size_t max_loaded = 4);

  // The model of `entry`, loaded on first use, its networks shared with the loaded models where their
  // tensors are identical. Call it from the thread that uses arrangements(): evicting a model empties them
  // when they are that model's.
  std::shared_ptr<const QwenImageModel> acquire(const ModelEntry& entry);
  // What the device holds between jobs (the queue's worker is its only user).
  ArrangementCache& arrangements() { return arrangements_; }
  Device device() const { return device_; }
  // The loaded models and the networks they share, as GET /v1/memory shows them.
  nlohmann::json describe() const;
  // The memory plan of the job now on the device (MemoryPlan::describe), for GET /v1/memory: the worker
  // notes it, the HTTP threads read it.
  void note_plan(std::vector<std::string> lines);
  std::vector<std::string> live_plan() const;
  // The device's recent recoveries from allocation failures, any job's (the last 50), for the memory view.
  void note_recovery(std::string text);
  nlohmann::json recent_recoveries() const;  // [{"time": unix seconds, "text"}], oldest first

 private:
  struct Loaded {
    ModelEntry entry;
    std::shared_ptr<const QwenImageModel> model;
    std::vector<std::string> shared;  // "text_encoder (with ID)"
    uint64_t last_used = 0;
  };
  // Points `model`'s text encoder and VAE at a loaded model's identical networks; returns what it shared.
  std::vector<std::string> share_networks(QwenImageModel& model) const;

  Device device_;
  std::optional<DType> precision_;
  size_t max_loaded_;
  mutable std::mutex mutex_;
  std::vector<Loaded> loaded_;
  uint64_t uses_ = 0;
  std::vector<std::string> live_plan_;
  std::vector<std::pair<double, std::string>> recoveries_;
  ArrangementCache arrangements_;
};

}  // namespace canvas::app
