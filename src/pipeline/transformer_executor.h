// Runs the Qwen-Image transformer for a whole job under a memory plan.
//  - The adaLN modulation of every block depends only on the timestep, so it is computed for all steps
//    up front, each block's modulation weights read once per job instead of once per step.
//  - With guidance, the conditional and unconditional inputs pass through each block in turn while
//    that block's weights are on the device: streamed weights cross the bus once per step, not twice.
//  - On several devices: a pipeline split hands the hidden states to the device of the next block; a
//    sequence-parallel placement gives each device a share of the tokens and exchanges attention heads
//    (pipeline/ulysses_attention.h); a CFG-parallel one runs each guidance half on a device of its own.
// Each input's arithmetic is exactly that of QwenImageTransformer2DModel::forward.
#pragma once

#include <memory>
#include <vector>

#include "backend/communicator.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/model_placement.h"
#include "pipeline/ulysses_attention.h"

namespace canvas {

// One prompt's conditioning for the transformer.
struct TransformerCondition {
  Tensor embeds;  // [1, T, joint_attention_dim]
  Tensor mask;    // [1, T], undefined when every token is valid
  QwenImageRotary rotary;
};

class TransformerExecutor {
 public:
  // `replicas`: the transformer whose weights `placement` arranges, one per share for a replicated
  // placement (in its device order), else one. `placement` is between begin_phase and end_phase while the
  // executor runs.
  TransformerExecutor(std::vector<const QwenImageTransformer2DModel*> replicas, ComponentPlacement& placement,
                      std::vector<ImageShape> img_shapes, DType dtype);

  // Computes every block's modulation for the timesteps (t / 1000, as forward takes them).
  void precompute_modulation(const std::vector<float>& timesteps);
  // The prompts' conditioning for the job, laid out once on the devices that read it.
  void set_conditions(std::vector<TransformerCondition> inputs);
  // The predictions for each condition at `step`, from the same latents, on the latents' device.
  std::vector<Tensor> predict(int step, const Tensor& latents);
  // Continues with another arrangement of the weights (a recovery's lower rung) over the same devices;
  // the modulation already computed is kept.
  void set_placement(ComponentPlacement& placement, std::vector<const QwenImageTransformer2DModel*> replicas);

 private:
  Spread spread() const { return placement_->plan().spread; }
  // One condition's tables where one of the placement's devices reads them: its rotary rows (for sequence
  // parallelism, those of the device's share of the tokens) and, split so, the key mask.
  struct DeviceCondition {
    Device device;
    TokenShare share;
    QwenImageRotary rotary;
    Tensor joint_key_mask;
  };
  const DeviceCondition& on_device(size_t condition, Device device) const;
  std::vector<Tensor> predict_on_blocks_devices(int step, const Tensor& latents);
  std::vector<Tensor> predict_sequence_parallel(int step, const Tensor& latents);
  std::vector<Tensor> predict_guidance_parallel(int step, const Tensor& latents);

  std::vector<const QwenImageTransformer2DModel*> replicas_;
  ComponentPlacement* placement_;
  std::vector<ImageShape> img_shapes_;
  DType dtype_;
  std::shared_ptr<Communicator> communicator_;
  std::vector<TransformerCondition> conditions_;
  std::vector<std::vector<DeviceCondition>> laid_out_;  // [condition][the placement's devices, in order]
  // Per replica: the block embedding per step, on the replica's first device, and each block's
  // modulation per step, on the block's device.
  std::vector<std::vector<Tensor>> block_temb_;
  std::vector<std::vector<std::vector<BlockModulation>>> modulation_;  // [replica][block][step]
};

}  // namespace canvas
