#include "pipeline/transformer_executor.h"

namespace canvas {

namespace {

QwenImageRotary rotary_on(const QwenImageRotary& rotary, Device device) {
  return {rotary.image_cos.to(device), rotary.image_sin.to(device), rotary.text_cos.to(device),
          rotary.text_sin.to(device)};
}

// The rotary rows of one device's tokens.
QwenImageRotary rotary_share(const QwenImageRotary& rotary, const TokenShare& share, Device device) {
  return {rotary.image_cos.slice(0, share.image_begin, share.image_end).to(device),
          rotary.image_sin.slice(0, share.image_begin, share.image_end).to(device),
          rotary.text_cos.slice(0, share.text_begin, share.text_end).to(device),
          rotary.text_sin.slice(0, share.text_begin, share.text_end).to(device)};
}

}  // namespace

TransformerExecutor::TransformerExecutor(std::vector<const QwenImageTransformer2DModel*> replicas,
                                         ComponentPlacement& placement, std::vector<ImageShape> img_shapes,
                                         DType dtype)
    : img_shapes_(std::move(img_shapes)), dtype_(dtype) {
  set_placement(placement, std::move(replicas));
  if (spread() == Spread::Sequence) {
    check(
        !replicas_.front()->config().zero_cond_t,
        "sequence parallelism does not handle zero_cond_t models (Qwen-Image-Edit-2511) yet: their reference "
        "images' tokens are modulated apart from the generated image's");
    communicator_ = shared_communicator(placement.devices());
  }
}

void TransformerExecutor::set_placement(ComponentPlacement& placement,
                                        std::vector<const QwenImageTransformer2DModel*> replicas) {
  const size_t expected = is_replicated(placement.plan().spread) ? placement.devices().size() : 1;
  check(replicas.size() == expected, "the transformer executor needs " + std::to_string(expected) +
                                         " replicas of the transformer for its placement, got " +
                                         std::to_string(replicas.size()));
  placement_ = &placement;
  replicas_ = std::move(replicas);
}

void TransformerExecutor::precompute_modulation(const std::vector<float>& timesteps) {
  const size_t replicas = replicas_.size();
  const size_t blocks = replicas_.front()->blocks().size();
  block_temb_.assign(replicas, {});
  modulation_.assign(replicas, std::vector<std::vector<BlockModulation>>(blocks));
  for (size_t r = 0; r < replicas; ++r) {
    for (float timestep : timesteps) {
      block_temb_[r].push_back(replicas_[r]->block_timestep_embedding(
          Tensor::from_floats(std::vector<float>{timestep}, {1}), dtype_));
    }
  }
  for (size_t i = 0; i < blocks; ++i) {
    placement_->before_once(static_cast<int>(i));
    for (size_t r = 0; r < replicas; ++r) {
      const Device device = is_replicated(spread()) ? placement_->devices()[r]
                                                    : placement_->device_of_block(static_cast<int>(i));
      for (const Tensor& temb : block_temb_[r])
        modulation_[r][i].push_back(replicas_[r]->blocks()[i].modulation(temb.to(device)));
    }
    placement_->after_once(static_cast<int>(i));
  }
}

void TransformerExecutor::set_conditions(std::vector<TransformerCondition> inputs) {
  const std::vector<Device>& devices = placement_->devices();
  check(spread() != Spread::Guidance || inputs.size() == devices.size(),
        "CFG parallelism runs one guidance half per device: " + std::to_string(devices.size()) +
            " devices were given " + std::to_string(inputs.size()) + " conditions");
  int64_t image_tokens = 0;
  for (const ImageShape& shape : img_shapes_) image_tokens += shape.tokens();
  conditions_ = std::move(inputs);
  laid_out_.assign(conditions_.size(), {});
  for (size_t k = 0; k < conditions_.size(); ++k) {
    const TransformerCondition& input = conditions_[k];
    const bool sequence = spread() == Spread::Sequence;
    const std::vector<TokenShare> shares =
        sequence ? share_tokens(input.embeds.dim(1), image_tokens, static_cast<int>(devices.size()))
                 : std::vector<TokenShare>(devices.size());
    for (size_t r = 0; r < devices.size(); ++r) {
      DeviceCondition laid{devices[r], shares[r], {}, {}};
      if (sequence) {
        laid.rotary = rotary_share(input.rotary, laid.share, devices[r]);
        laid.joint_key_mask = replicas_[r]->joint_key_mask(input.mask, image_tokens, devices[r]);
      } else {
        laid.rotary = rotary_on(input.rotary, devices[r]);
      }
      laid_out_[k].push_back(std::move(laid));
    }
  }
}

const TransformerExecutor::DeviceCondition& TransformerExecutor::on_device(size_t condition,
                                                                           Device device) const {
  for (const DeviceCondition& laid : laid_out_[condition])
    if (laid.device == device) return laid;
  throw Error("the transformer's conditions were not laid out on " + device.str());
}

std::vector<Tensor> TransformerExecutor::predict(int step, const Tensor& latents) {
  check(step >= 0 && !block_temb_.empty() && step < static_cast<int>(block_temb_.front().size()),
        "transformer step " + std::to_string(step) + " has no precomputed modulation");
  check(!conditions_.empty(), "the transformer executor was given no conditions");
  switch (spread()) {
    case Spread::Sequence:
      return predict_sequence_parallel(step, latents);
    case Spread::Guidance:
      return predict_guidance_parallel(step, latents);
    case Spread::One:
    case Spread::Pipeline:
      break;
  }
  return predict_on_blocks_devices(step, latents);
}

std::vector<Tensor> TransformerExecutor::predict_on_blocks_devices(int step, const Tensor& latents) {
  const QwenImageTransformer2DModel& transformer = *replicas_.front();
  Device current = placement_->device();
  std::vector<QwenImageBlockInputs> states;
  for (size_t k = 0; k < conditions_.size(); ++k) {
    const TransformerCondition& input = conditions_[k];
    states.push_back(
        transformer.embed(latents, input.embeds, input.mask, img_shapes_, on_device(k, current).rotary));
  }
  const auto& blocks = transformer.blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    placement_->before_block(static_cast<int>(i));
    // A pipeline split hands the hidden states on to the device of the next block.
    if (const Device device = placement_->device_of_block(static_cast<int>(i)); device != current) {
      current = device;
      for (QwenImageBlockInputs& state : states) {
        state.image = state.image.to(device);
        state.text = state.text.to(device);
        if (state.joint_key_mask.defined()) state.joint_key_mask = state.joint_key_mask.to(device);
      }
    }
    for (size_t k = 0; k < states.size(); ++k) {
      QwenImageBlockInputs& state = states[k];
      std::tie(state.text, state.image) =
          blocks[i].forward(state.image, state.text, state.joint_key_mask, modulation_[0][i][step],
                            on_device(k, current).rotary, state.target_tokens);
    }
    placement_->after_block(static_cast<int>(i));
  }
  std::vector<Tensor> predictions;
  for (const QwenImageBlockInputs& state : states) {
    predictions.push_back(
        transformer.finish(state.image.to(placement_->device()), block_temb_[0][step]).to(latents.device()));
  }
  return predictions;
}

std::vector<Tensor> TransformerExecutor::predict_sequence_parallel(int step, const Tensor& latents) {
  const size_t count = placement_->devices().size();
  const int64_t image_tokens = latents.dim(1);
  // Per condition, per device: the hidden states of its tokens.
  struct DeviceState {
    Tensor image, text;
  };
  std::vector<std::vector<DeviceState>> states(conditions_.size(), std::vector<DeviceState>(count));
  for (size_t k = 0; k < conditions_.size(); ++k) {
    for (size_t r = 0; r < count; ++r) {
      const TokenShare& share = laid_out_[k][r].share;
      std::tie(states[k][r].image, states[k][r].text) =
          replicas_[r]->embed_tokens(latents.slice(1, share.image_begin, share.image_end),
                                     conditions_[k].embeds.slice(1, share.text_begin, share.text_end));
    }
  }
  const size_t blocks = replicas_.front()->blocks().size();
  for (size_t i = 0; i < blocks; ++i) {
    placement_->before_block(static_cast<int>(i));
    for (size_t k = 0; k < conditions_.size(); ++k) {
      std::vector<JointProjections> projections;
      std::vector<TokenShare> shares;
      std::vector<Tensor> masks;
      for (size_t r = 0; r < count; ++r) {
        const DeviceCondition& laid = laid_out_[k][r];
        projections.push_back(replicas_[r]->blocks()[i].attention_inputs(
            states[k][r].image, states[k][r].text, modulation_[r][i][step], laid.rotary, image_tokens));
        shares.push_back(laid.share);
        masks.push_back(laid.joint_key_mask);
      }
      std::vector<Tensor> attention = ulysses_attention(*communicator_, projections, shares, masks);
      for (size_t r = 0; r < count; ++r) {
        DeviceState& state = states[k][r];
        std::tie(state.text, state.image) = replicas_[r]->blocks()[i].attention_residual(
            state.image, state.text, attention[r], modulation_[r][i][step], image_tokens);
      }
    }
    placement_->after_block(static_cast<int>(i));
  }
  // Each device's final layers on its own image tokens, gathered in token order where the latents are.
  std::vector<Tensor> predictions;
  for (const std::vector<DeviceState>& condition : states) {
    std::vector<Tensor> parts;
    for (size_t r = 0; r < count; ++r)
      parts.push_back(replicas_[r]->finish(condition[r].image, block_temb_[r][step]).to(latents.device()));
    predictions.push_back(ops::concat(parts, 1));
  }
  return predictions;
}

std::vector<Tensor> TransformerExecutor::predict_guidance_parallel(int step, const Tensor& latents) {
  const std::vector<Device>& devices = placement_->devices();
  std::vector<QwenImageBlockInputs> states;
  for (size_t r = 0; r < devices.size(); ++r) {
    const TransformerCondition& input = conditions_[r];
    states.push_back(
        replicas_[r]->embed(latents, input.embeds, input.mask, img_shapes_, laid_out_[r][r].rotary));
  }
  const size_t blocks = replicas_.front()->blocks().size();
  for (size_t i = 0; i < blocks; ++i) {
    placement_->before_block(static_cast<int>(i));
    for (size_t r = 0; r < devices.size(); ++r) {
      QwenImageBlockInputs& state = states[r];
      std::tie(state.text, state.image) = replicas_[r]->blocks()[i].forward(
          state.image, state.text, state.joint_key_mask, modulation_[r][i][step], laid_out_[r][r].rotary,
          state.target_tokens);
    }
    placement_->after_block(static_cast<int>(i));
  }
  std::vector<Tensor> predictions;
  for (size_t r = 0; r < devices.size(); ++r)
    predictions.push_back(replicas_[r]->finish(states[r].image, block_temb_[r][step]).to(latents.device()));
  return predictions;
}

}  // namespace canvas
