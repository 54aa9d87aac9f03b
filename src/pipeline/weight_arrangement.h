// How one job shape holds the model's weights: working copies of the networks (sharing the mapped
// checkpoint; host weights converted to their placed dtypes, the transformer's blocks quantized as the
// plan says) and each component's placement on the devices. The loaded model is never changed.
//
// A job makes one, or takes over the one an ArrangementCache kept from an earlier job of the same shape and
// memory options, so the weights already on the devices stay there.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "models/lora.h"
#include "pipeline/memory_options.h"
#include "pipeline/model_placement.h"
#include "pipeline/qwen_image_model.h"

namespace canvas {

class WeightArrangement {
 public:
  // Arranges every component as `plan` says. `key` names what the plan was made for (plan_key and the
  // degradation); `facts` and `machine` are what it was made from, for re-evaluating it when a recovery
  // narrows it.
  // `loras` are attached to the working networks (models/lora.h); with LoraApply::Auto, those on layers a
  // placement holds whole in lossless storage are folded into the placed copies.
  WeightArrangement(const QwenImageModel& model, std::string key, std::vector<ComponentFacts> facts,
                    MachineFacts machine, MemoryPlan plan, int64_t feed_forward_chunk,
                    std::vector<AppliedLora> loras = {}, LoraApply lora_apply = LoraApply::Auto);
  // The placements point into the working networks: they go first.
  ~WeightArrangement();
  WeightArrangement(const WeightArrangement&) = delete;
  WeightArrangement& operator=(const WeightArrangement&) = delete;

  const std::string& key() const { return key_; }
  const std::vector<ComponentFacts>& facts() const { return facts_; }
  const MachineFacts& machine() const { return machine_; }
  const MemoryPlan& plan() const { return plan_; }

  // The working networks the phases compute with. The vision encoder throws canvas::Error for a model
  // without one.
  const Qwen2_5_VisionTransformerPretrainedModel& vision_encoder() const;
  const Qwen2_5_VLTextModel& text_encoder() const { return *text_encoder_; }
  const AutoencoderKLQwenImage& vae() const { return *vae_; }
  // The transformer once per device of its placement (the working one first).
  std::vector<const QwenImageTransformer2DModel*> transformers() const;

  // Throws canvas::Error when the component is released.
  ComponentPlacement& placement(Component component);
  bool placed(Component component) const { return placement_slot(component) != nullptr; }
  // Drops a component's placement (giving its device memory back); returns the weight bytes it streamed.
  int64_t release(Component component);
  // Arranges a released component as `part` says, and re-evaluates the plan's figures with it.
  void arrange(const ComponentPlan& part);
  // Stores the transformer's host weights in `precision`, from the loaded checkpoint again. Its placement
  // must have been released.
  void store_transformer_weights(WeightPrecision precision);
  // Runs the transformer's feed-forward in chunks of `tokens` (0: all at once).
  void set_feed_forward_chunk(int64_t tokens);

  // Linear layers the LoRAs change, and how many of those a placement folded them into.
  int lora_layers() const { return lora_layers_; }
  int lora_layers_merged() const { return static_cast<int>(merged_layers_.size()); }

  // Every device the plan uses, the primary first.
  std::vector<Device> devices() const;
  // Hands every device's cached memory back to its driver.
  void release_cached_memory() const;

 private:
  // Makes `part`'s placement, without touching the plan.
  void place(const ComponentPlan& part);
  // The transformer's working copy from the loaded one: its LoRAs attached, its host weights converted
  // and stored in `precision`.
  // Returns the layers the LoRAs change.
  int prepare_transformer(WeightPrecision precision);
  // The groups of `weights` fold the LoRAs of `network` they hold into their placed copies (LoraApply::Auto).
  template <typename Network>
  ComponentWeights merging_loras(ComponentWeights weights, Network& network);
  const std::unique_ptr<ComponentPlacement>& placement_slot(Component component) const;
  std::unique_ptr<ComponentPlacement>& placement_slot(Component component);

  const QwenImageModel& model_;
  std::string key_;
  std::vector<ComponentFacts> facts_;
  MachineFacts machine_;
  MemoryPlan plan_;
  std::vector<AppliedLora> loras_;
  LoraApply lora_apply_;
  int lora_layers_ = 0;
  std::set<const nn::Linear*> merged_layers_;
  std::unique_ptr<Qwen2_5_VisionTransformerPretrainedModel> vision_encoder_;  // edit models only
  std::unique_ptr<Qwen2_5_VLTextModel> text_encoder_;
  std::unique_ptr<QwenImageTransformer2DModel> transformer_;
  std::unique_ptr<AutoencoderKLQwenImage> vae_;
  // A replicated transformer's copies for its further devices (sharing the host weights). Declared before
  // the placements, which point into them and so must go first.
  std::vector<std::unique_ptr<QwenImageTransformer2DModel>> transformer_replicas_;
  std::unique_ptr<ComponentPlacement> vision_encoder_placement_, text_encoder_placement_,
      transformer_placement_, vae_placement_;
};

// What stays arranged on the devices between the jobs of one caller (a command, a server worker): a job of
// the same shape and memory options takes the arrangement over; any other job releases it first, so its
// memory is free for the new plan.
struct ArrangementCache {
  std::unique_ptr<WeightArrangement> arrangement;
};

}  // namespace canvas
