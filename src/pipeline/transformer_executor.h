// Runs the Qwen-Image transformer for a whole job under a memory plan.
//  - The adaLN modulation of every block depends only on the timestep, so it is computed for all steps
//    up front, each block's modulation weights read once per job instead of once per step.
//  - With guidance, the conditional and unconditional inputs pass through each block in turn while
//    that block's weights are on the device: streamed weights cross the bus once per step, not twice.
// Each input's arithmetic is exactly that of QwenImageTransformer2DModel::forward.
#pragma once

#include <vector>

#include "models/qwen_image_transformer.h"
#include "pipeline/model_placement.h"

namespace canvas {

// One prompt's conditioning for the transformer.
struct TransformerCondition {
  Tensor embeds;  // [1, T, joint_attention_dim]
  Tensor mask;    // [1, T], undefined when every token is valid
  QwenImageRotary rotary;
};

class TransformerExecutor {
 public:
  // `placement` is between begin_phase and end_phase while the executor runs.
  TransformerExecutor(const QwenImageTransformer2DModel& transformer, ComponentPlacement& placement,
                      std::vector<ImageShape> img_shapes, DType dtype);

  // Computes every block's modulation for the timesteps (t / 1000, as forward takes them).
  void precompute_modulation(const std::vector<float>& timesteps);
  // The predictions for each condition at `step`, from the same latents.
  std::vector<Tensor> predict(int step, const Tensor& latents,
                              const std::vector<TransformerCondition>& inputs);
  // Continues with another arrangement of the weights (a recovery's lower rung); the modulation already
  // computed is kept.
  void set_placement(ComponentPlacement& placement) { placement_ = &placement; }

 private:
  const QwenImageTransformer2DModel& transformer_;
  ComponentPlacement* placement_;
  std::vector<ImageShape> img_shapes_;
  DType dtype_;
  std::vector<Tensor> block_temb_;                        // per step
  std::vector<std::vector<BlockModulation>> modulation_;  // [block][step]
};

}  // namespace canvas
