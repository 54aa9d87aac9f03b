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
  // `earlier` arrangements (earlier jobs', the most recent first) hand over each component this plan places
  // exactly as one of them did, from the same loaded network (models may share networks: app/residency.h)
  // with the same LoRAs: its working network and its placement move over with their weights still on the
  // device. Then, before anything is placed, the oldest of them are released until what the rest hold on
  // the device is at most `keep_bytes` (the plan's slack); those stay in `earlier`.
  WeightArrangement(const QwenImageModel& model, std::string key, std::vector<ComponentFacts> facts,
                    MachineFacts machine, MemoryPlan plan, int64_t feed_forward_chunk,
                    std::vector<AppliedLora> loras = {}, LoraApply lora_apply = LoraApply::Auto,
                    std::vector<std::unique_ptr<WeightArrangement>>* earlier = nullptr,
                    int64_t keep_bytes = 0);
  // The placements point into the working networks: they go first.
  ~WeightArrangement();
  WeightArrangement(const WeightArrangement&) = delete;
  WeightArrangement& operator=(const WeightArrangement&) = delete;

  // The model it arranges, which must outlive it (an ArrangementCache is emptied before its model goes).
  const QwenImageModel& model() const { return model_; }
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

  // The components taken over from earlier arrangements, in plan order.
  const std::vector<Component>& adopted() const { return adopted_; }
  // The weight bytes its resident placements hold on the devices between phases.
  int64_t resident_weight_bytes() const;

  // Linear layers the LoRAs change, and how many of those a placement folded them into.
  int lora_layers() const { return text_encoder_lora_layers_ + transformer_lora_layers_; }
  int lora_layers_merged() const { return static_cast<int>(merged_layers_.size()); }

  // Every device the plan uses, the primary first.
  std::vector<Device> devices() const;
  // Hands every device's cached memory back to its driver.
  void release_cached_memory() const;

 private:
  // Makes `part`'s placement, without touching the plan.
  void place(const ComponentPlan& part);
  // Whether `previous` holds `part`'s component placed as `part` says, from the same network and LoRAs.
  bool can_adopt(const WeightArrangement& previous, const ComponentPlan& part) const;
  // Moves the component's working network, placement and merged layers over from `previous`.
  void adopt(WeightArrangement& previous, Component component);
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
  int text_encoder_lora_layers_ = 0;
  int transformer_lora_layers_ = 0;
  int64_t feed_forward_chunk_ = 0;
  std::set<const nn::Linear*> merged_layers_;
  std::vector<Component> adopted_;
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
// the same shape and memory options takes the arrangement over; any other job plans as if it were released
// and takes over the components it places the same way (WeightArrangement's `earlier`). What the job does
// not use stays parked while the device has room for it beside the job's plan (least recently used goes
// first), for a later job to take over; an allocation failure releases the parked weights first.
struct ArrangementCache {
  std::unique_ptr<WeightArrangement> arrangement;
  std::vector<std::unique_ptr<WeightArrangement>> parked;  // the most recently used first
};

}  // namespace canvas
