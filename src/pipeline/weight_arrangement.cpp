#include "pipeline/weight_arrangement.h"

#include <algorithm>

#include "backend/backend.h"
#include "pipeline/component_weights.h"

namespace canvas {

namespace {

// Converts a network's host weights to their placed dtypes, so placing and streaming copy them as they are.
template <typename Network>
void convert_host_weights(Network& network, Device device, DType compute_dtype) {
  network.visit([&](const std::string& name, Tensor& weight) {
    const DType dtype = nn::placed_dtype(weight, name, device, compute_dtype);
    if (dtype != weight.dtype()) weight = weight.to(dtype);
  });
}

// The storage the plan gives the transformer: quantizes the host copies of its blocks.
void quantize_transformer(QwenImageTransformer2DModel& transformer, WeightPrecision precision) {
  if (precision == WeightPrecision::Lossless) return;
  transformer.quantize_block_weights(precision == WeightPrecision::Fp8 ? WeightFormat::Fp8PerTensor
                                                                       : WeightFormat::Nf4);
}

}  // namespace

WeightArrangement::WeightArrangement(const QwenImageModel& model, std::string key,
                                     std::vector<ComponentFacts> facts, MachineFacts machine, MemoryPlan plan,
                                     int64_t feed_forward_chunk, std::vector<AppliedLora> loras,
                                     LoraApply lora_apply,
                                     std::vector<std::unique_ptr<WeightArrangement>>* earlier,
                                     int64_t keep_bytes)
    : model_(model),
      key_(std::move(key)),
      facts_(std::move(facts)),
      machine_(std::move(machine)),
      plan_(std::move(plan)),
      loras_(std::move(loras)),
      lora_apply_(lora_apply),
      feed_forward_chunk_(feed_forward_chunk) {
  if (earlier) {
    for (const ComponentPlan& part : plan_.components) {
      for (const std::unique_ptr<WeightArrangement>& candidate : *earlier) {
        if (!can_adopt(*candidate, part)) continue;
        adopt(*candidate, part.component);
        break;
      }
    }
    // What stays parked must leave the plan its room: the oldest go first, and so does what holds nothing
    // on the device (its host copies would only cost host memory).
    int64_t kept = 0;
    std::vector<std::unique_ptr<WeightArrangement>> parked;
    for (std::unique_ptr<WeightArrangement>& candidate : *earlier) {
      const int64_t held = candidate->resident_weight_bytes();
      if (held > 0 && kept + held <= keep_bytes) {
        kept += held;
        parked.push_back(std::move(candidate));
      }
    }
    *earlier = std::move(parked);
    for (const Device& device : devices()) backend_for(device).release_cached_memory();
  }
  auto is_adopted = [&](Component component) {
    return std::find(adopted_.begin(), adopted_.end(), component) != adopted_.end();
  };
  // Only a job that plans the vision encoder arranges it; an edit model's text-to-image jobs leave it be.
  if (plan_.find(Component::VisionEncoder) && !is_adopted(Component::VisionEncoder)) {
    check(model.vision_encoder != nullptr, "the job plans a vision encoder but the model has none");
    vision_encoder_ = std::make_unique<Qwen2_5_VisionTransformerPretrainedModel>(*model.vision_encoder);
    convert_host_weights(*vision_encoder_, model.device, model.activation_dtype);
  }
  if (!is_adopted(Component::TextEncoder)) {
    text_encoder_ = std::make_unique<Qwen2_5_VLTextModel>(*model.text_encoder);
    text_encoder_lora_layers_ = attach_loras(loras_, *text_encoder_);
    convert_host_weights(*text_encoder_, model.device, model.activation_dtype);
  }
  if (!is_adopted(Component::Transformer)) {
    transformer_ = std::make_unique<QwenImageTransformer2DModel>(*model.transformer);
    transformer_lora_layers_ = prepare_transformer(plan_.component(Component::Transformer).precision);
    transformer_->enable_forward_chunking(feed_forward_chunk);
  }
  if (!is_adopted(Component::Vae)) {
    vae_ = std::make_unique<AutoencoderKLQwenImage>(*model.vae);
    convert_host_weights(*vae_, model.device, model.vae_dtype);
  }
  for (const ComponentPlan& part : plan_.components) {
    if (!is_adopted(part.component)) place(part);
  }
}

namespace {

// Whether two plans of a component put the same weights in the same places (predicted times aside).
bool same_placement(const ComponentPlan& a, const ComponentPlan& b) {
  if (a.residency != b.residency || a.precision != b.precision || a.resident_blocks != b.resident_blocks ||
      a.streamed_blocks != b.streamed_blocks || a.slots != b.slots || a.placed_bytes != b.placed_bytes ||
      a.spread != b.spread || a.shares.size() != b.shares.size()) {
    return false;
  }
  for (size_t i = 0; i < a.shares.size(); ++i) {
    const DeviceShare& x = a.shares[i];
    const DeviceShare& y = b.shares[i];
    if (x.device != y.device || x.first_block != y.first_block || x.blocks != y.blocks ||
        x.resident_blocks != y.resident_blocks || x.streamed_blocks != y.streamed_blocks ||
        x.slots != y.slots || x.holds_shared != y.holds_shared || x.placed_bytes != y.placed_bytes) {
      return false;
    }
  }
  return true;
}

}  // namespace

int64_t WeightArrangement::resident_weight_bytes() const {
  int64_t bytes = 0;
  for (const ComponentPlan& part : plan_.components)
    if (placed(part.component) && part.residency == Residency::Resident) bytes += part.placed_bytes;
  return bytes;
}

bool WeightArrangement::can_adopt(const WeightArrangement& previous, const ComponentPlan& part) const {
  const Component component = part.component;
  const ComponentPlan* before = previous.plan_.find(component);
  if (!before || !previous.placed(component) || !same_placement(*before, part)) return false;
  if (previous.placement_slot(component)->in_phase()) return false;
  const QwenImageModel& other = previous.model_;
  if (other.device != model_.device || other.activation_dtype != model_.activation_dtype) return false;
  // The LoRAs change the text encoder's and the transformer's weights, never the others'.
  const bool same_loras =
      loras_identity(previous.loras_) == loras_identity(loras_) && previous.lora_apply_ == lora_apply_;
  switch (component) {
    case Component::VisionEncoder:
      return other.vision_encoder != nullptr && other.vision_encoder == model_.vision_encoder;
    case Component::TextEncoder:
      return other.text_encoder == model_.text_encoder && same_loras;
    case Component::Transformer:
      return other.transformer == model_.transformer && same_loras &&
             previous.feed_forward_chunk_ == feed_forward_chunk_;
    case Component::Vae:
      return other.vae == model_.vae && other.vae_dtype == model_.vae_dtype;
  }
  return false;
}

void WeightArrangement::adopt(WeightArrangement& previous, Component component) {
  // The merged layers are the adopted network's own: they move with it.
  auto take_merged = [&](auto& network) {
    network.visit_linears([&](const std::string&, nn::Linear& layer) {
      if (previous.merged_layers_.erase(&layer) > 0) merged_layers_.insert(&layer);
    });
  };
  switch (component) {
    case Component::VisionEncoder:
      vision_encoder_ = std::move(previous.vision_encoder_);
      break;
    case Component::TextEncoder:
      text_encoder_ = std::move(previous.text_encoder_);
      text_encoder_lora_layers_ = previous.text_encoder_lora_layers_;
      take_merged(*text_encoder_);
      break;
    case Component::Transformer:
      transformer_ = std::move(previous.transformer_);
      transformer_replicas_ = std::move(previous.transformer_replicas_);
      transformer_lora_layers_ = previous.transformer_lora_layers_;
      take_merged(*transformer_);
      for (auto& replica : transformer_replicas_) take_merged(*replica);
      break;
    case Component::Vae:
      vae_ = std::move(previous.vae_);
      break;
  }
  placement_slot(component) = std::move(previous.placement_slot(component));
  adopted_.push_back(component);
}

WeightArrangement::~WeightArrangement() {
  vision_encoder_placement_.reset();
  text_encoder_placement_.reset();
  transformer_placement_.reset();
  vae_placement_.reset();
}

const Qwen2_5_VisionTransformerPretrainedModel& WeightArrangement::vision_encoder() const {
  check(vision_encoder_ != nullptr, "the job has no vision encoder: only edit models have one");
  return *vision_encoder_;
}

std::vector<const QwenImageTransformer2DModel*> WeightArrangement::transformers() const {
  std::vector<const QwenImageTransformer2DModel*> models{transformer_.get()};
  for (const auto& replica : transformer_replicas_) models.push_back(replica.get());
  return models;
}

const std::unique_ptr<ComponentPlacement>& WeightArrangement::placement_slot(Component component) const {
  switch (component) {
    case Component::VisionEncoder:
      return vision_encoder_placement_;
    case Component::TextEncoder:
      return text_encoder_placement_;
    case Component::Transformer:
      return transformer_placement_;
    case Component::Vae:
      break;
  }
  return vae_placement_;
}

std::unique_ptr<ComponentPlacement>& WeightArrangement::placement_slot(Component component) {
  return const_cast<std::unique_ptr<ComponentPlacement>&>(std::as_const(*this).placement_slot(component));
}

ComponentPlacement& WeightArrangement::placement(Component component) {
  std::unique_ptr<ComponentPlacement>& slot = placement_slot(component);
  check(slot != nullptr, "the " + component_label(component) + "'s weights are not arranged");
  return *slot;
}

int64_t WeightArrangement::release(Component component) {
  std::unique_ptr<ComponentPlacement>& slot = placement_slot(component);
  const int64_t streamed = slot ? slot->bytes_streamed() : 0;
  slot.reset();
  if (component == Component::Transformer) transformer_replicas_.clear();
  release_cached_memory();
  return streamed;
}

void WeightArrangement::arrange(const ComponentPlan& part) {
  place(part);
  plan_.component(part.component) = part;
  plan_ = evaluate_plan(facts_, machine_, plan_);
}

void WeightArrangement::place(const ComponentPlan& part) {
  const Device device = model_.device;
  // Placing locks pages only for its copies, within what the transformer's streamed blocks leave of the
  // budget: those stay locked.
  const ComponentPlan* transformer = plan_.find(Component::Transformer);
  const int64_t placing_lock_budget =
      std::max<int64_t>(0, plan_.page_lock_budget - (transformer ? transformer->page_locked_bytes : 0));
  std::unique_ptr<ComponentPlacement>& slot = placement_slot(part.component);
  check(slot == nullptr, "the " + component_label(part.component) + " is arranged already: release it first");
  switch (part.component) {
    case Component::VisionEncoder:
      check(vision_encoder_ != nullptr, "the job has no vision encoder: only edit models have one");
      slot = std::make_unique<ComponentPlacement>(device, vision_encoder_weights(*vision_encoder_), part,
                                                  placing_lock_budget);
      break;
    case Component::TextEncoder:
      slot = std::make_unique<ComponentPlacement>(
          device, merging_loras(text_encoder_weights(*text_encoder_), *text_encoder_), part,
          placing_lock_budget);
      break;
    case Component::Vae:
      slot = std::make_unique<ComponentPlacement>(device, vae_weights(*vae_), part, placing_lock_budget);
      break;
    case Component::Transformer:
      if (!is_replicated(part.spread)) {
        slot = std::make_unique<ComponentPlacement>(
            device, merging_loras(transformer_weights(*transformer_), *transformer_), part,
            placing_lock_budget);
        break;
      }
      // Copies of the network share its host weights; each device's placement swaps in its own device copies.
      std::vector<ComponentWeights> replicas{
          merging_loras(transformer_weights(*transformer_), *transformer_)};
      for (size_t share = 1; share < part.shares.size(); ++share) {
        transformer_replicas_.push_back(std::make_unique<QwenImageTransformer2DModel>(*transformer_));
        QwenImageTransformer2DModel& replica = *transformer_replicas_.back();
        replicas.push_back(merging_loras(transformer_weights(replica), replica));
      }
      slot = std::make_unique<ComponentPlacement>(device, std::move(replicas), part, placing_lock_budget);
      break;
  }
}

int WeightArrangement::prepare_transformer(WeightPrecision precision) {
  *transformer_ = *model_.transformer;
  const int layers = attach_loras(loras_, *transformer_);
  convert_host_weights(*transformer_, model_.device, model_.activation_dtype);
  quantize_transformer(*transformer_, precision);
  return layers;
}

void WeightArrangement::store_transformer_weights(WeightPrecision precision) {
  check(transformer_placement_ == nullptr, "the transformer's weights are stored anew only once released");
  const int64_t chunk = transformer_->forward_chunk_size();
  // The stored weights are new, so no LoRA is folded into them yet.
  transformer_->visit_linears([&](const std::string&, nn::Linear& layer) { merged_layers_.erase(&layer); });
  transformer_lora_layers_ = prepare_transformer(precision);
  transformer_->enable_forward_chunking(chunk);
}

template <typename Network>
ComponentWeights WeightArrangement::merging_loras(ComponentWeights weights, Network& network) {
  if (lora_apply_ != LoraApply::Auto || loras_.empty()) return weights;
  std::vector<WeightGroup*> groups{&weights.shared};
  for (WeightGroup& group : weights.blocks) groups.push_back(&group);
  for (WeightGroup& group : weights.once_blocks) groups.push_back(&group);
  network.visit_linears([&](const std::string&, nn::Linear& layer) {
    if (!can_merge_lora(layer)) return;
    for (WeightGroup* group : groups) {
      if (std::find(group->tensors.begin(), group->tensors.end(), &layer.weight) == group->tensors.end())
        continue;
      group->on_placed.push_back([this, &layer] {
        merge_lora(layer);
        merged_layers_.insert(&layer);
      });
      return;
    }
  });
  return weights;
}

void WeightArrangement::set_feed_forward_chunk(int64_t tokens) {
  feed_forward_chunk_ = tokens;
  transformer_->enable_forward_chunking(tokens);
  for (auto& replica : transformer_replicas_) replica->enable_forward_chunking(tokens);
}

std::vector<Device> WeightArrangement::devices() const {
  std::vector<Device> all;
  for (const DevicePool& pool : machine_.pools()) all.push_back(pool.device);
  return all;
}

void WeightArrangement::release_cached_memory() const {
  for (const Device& device : devices()) backend_for(device).release_cached_memory();
}

}  // namespace canvas
