#include "pipeline/component_weights.h"

namespace canvas {

namespace {

WeightGroup group_of(Component component, int block,
                     const std::function<void(const nn::ParameterVisitor&)>& visit) {
  WeightGroup group{{component_label(component), block, MemoryRole::Weights}, {}, {}};
  visit([&](const std::string&, Tensor& tensor) { group.tensors.push_back(&tensor); });
  return group;
}

}  // namespace

bool is_modulation(const std::string& name) {
  return name.starts_with("img_mod.") || name.starts_with("txt_mod.");
}

ComponentWeights vision_encoder_weights(Qwen2_5_VisionTransformerPretrainedModel& model) {
  ComponentWeights weights{Component::VisionEncoder, {}, {}, {}};
  weights.shared = group_of(Component::VisionEncoder, -1, [&](const auto& v) { model.visit_shared(v); });
  for (size_t i = 0; i < model.blocks().size(); ++i) {
    weights.blocks.push_back(group_of(Component::VisionEncoder, static_cast<int>(i),
                                      [&](const auto& v) { model.blocks()[i].visit("", v); }));
  }
  return weights;
}

ComponentWeights text_encoder_weights(Qwen2_5_VLTextModel& model) {
  ComponentWeights weights{Component::TextEncoder, {}, {}, {}};
  weights.shared = group_of(Component::TextEncoder, -1, [&](const auto& v) { model.visit_shared(v); });
  for (size_t i = 0; i < model.layers().size(); ++i) {
    weights.blocks.push_back(group_of(Component::TextEncoder, static_cast<int>(i),
                                      [&](const auto& v) { model.layers()[i].visit("", v); }));
  }
  return weights;
}

ComponentWeights transformer_weights(QwenImageTransformer2DModel& model) {
  ComponentWeights weights{Component::Transformer, {}, {}, {}};
  weights.shared = group_of(Component::Transformer, -1, [&](const auto& v) { model.visit_shared(v); });
  for (size_t i = 0; i < model.blocks().size(); ++i) {
    WeightGroup every_step{
        {component_label(Component::Transformer), static_cast<int>(i), MemoryRole::Weights}, {}, {}};
    WeightGroup once = every_step;
    model.blocks()[i].visit("", [&](const std::string& name, Tensor& tensor) {
      (is_modulation(name) ? once : every_step).tensors.push_back(&tensor);
    });
    weights.blocks.push_back(std::move(every_step));
    weights.once_blocks.push_back(std::move(once));
  }
  return weights;
}

ComponentWeights vae_weights(AutoencoderKLQwenImage& model) {
  return {Component::Vae, group_of(Component::Vae, -1, [&](const auto& v) { model.visit(v); }), {}, {}};
}

}  // namespace canvas
