#include "pipeline/transformer_executor.h"

namespace canvas {

TransformerExecutor::TransformerExecutor(const QwenImageTransformer2DModel& transformer,
                                         ComponentPlacement& placement, std::vector<ImageShape> img_shapes,
                                         DType dtype)
    : transformer_(transformer), placement_(&placement), img_shapes_(std::move(img_shapes)), dtype_(dtype) {}

void TransformerExecutor::precompute_modulation(const std::vector<float>& timesteps) {
  block_temb_.clear();
  for (float timestep : timesteps) {
    block_temb_.push_back(transformer_.block_timestep_embedding(
        Tensor::from_floats(std::vector<float>{timestep}, {1}), dtype_));
  }
  const auto& blocks = transformer_.blocks();
  modulation_.assign(blocks.size(), {});
  for (size_t i = 0; i < blocks.size(); ++i) {
    placement_->before_once(static_cast<int>(i));
    for (const Tensor& temb : block_temb_) modulation_[i].push_back(blocks[i].modulation(temb));
    placement_->after_once(static_cast<int>(i));
  }
}

std::vector<Tensor> TransformerExecutor::predict(int step, const Tensor& latents,
                                                 const std::vector<TransformerCondition>& inputs) {
  check(step >= 0 && step < static_cast<int>(block_temb_.size()),
        "transformer step " + std::to_string(step) + " has no precomputed modulation");
  std::vector<QwenImageBlockInputs> states;
  for (const TransformerCondition& input : inputs)
    states.push_back(transformer_.embed(latents, input.embeds, input.mask, img_shapes_, input.rotary));
  const auto& blocks = transformer_.blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    placement_->before_block(static_cast<int>(i));
    for (size_t k = 0; k < inputs.size(); ++k) {
      QwenImageBlockInputs& state = states[k];
      std::tie(state.text, state.image) =
          blocks[i].forward(state.image, state.text, state.joint_key_mask, modulation_[i][step],
                            inputs[k].rotary, state.target_tokens);
    }
    placement_->after_block(static_cast<int>(i));
  }
  std::vector<Tensor> predictions;
  for (const QwenImageBlockInputs& state : states)
    predictions.push_back(transformer_.finish(state.image, block_temb_[step]));
  return predictions;
}

}  // namespace canvas
