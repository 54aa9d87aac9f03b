// LoRAs on a network's linear layers. Every LoRA a job applies to a layer is stacked into one side path on
// the nn::Linear (the low-rank pairs along one rank with their scales folded into lora_up, the full
// differences summed), which the layer computes beside its weight. Where the weight is held whole in
// lossless storage, merge_lora folds the side path into a copy of the weight instead, so the passes pay
// nothing for it; the checkpoint's own weight is never changed.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/lora_file.h"
#include "models/nn.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen_image_transformer.h"

namespace canvas {

// A LoRA file as a user names it: `--lora FILE[:STRENGTH]`.
struct LoraChoice {
  std::filesystem::path path;
  float strength = 1.0f;

  // Parses "FILE" or "FILE:STRENGTH" (the last ':' followed by a number); throws canvas::Error otherwise.
  static LoraChoice parse(const std::string& text);
};

// A LoRA file read for a job.
struct AppliedLora {
  LoraFile file;
  float strength = 1.0f;
  // The file's path, size and modification time with the strength: equal for the same LoRA applied the
  // same way, so weights arranged with it can be kept for the next job.
  std::string identity;
};

// Reads each chosen file against the modules of a model with these networks' configurations.
std::vector<AppliedLora> read_loras(const std::vector<LoraChoice>& choices,
                                    const QwenImageTransformerConfig& transformer,
                                    const Qwen2_5_VLTextConfig& text_encoder);

// What arrangements of weights are told apart by: every LoRA's identity, in order; empty without LoRAs.
std::string loras_identity(const std::vector<AppliedLora>& loras);

// Sets the side path of every linear layer `visit_linears` gives from the updates of `loras` for
// `component`, and clears it on layers they do not name; returns how many layers have one. The stacked
// tensors are f32 on the host. Throws
// canvas::Error naming the file and module when an update does not fit its layer's weight, or names a
// module that is not a linear layer of the network.
int attach_loras(const std::vector<AppliedLora>& loras, LoraComponent component,
                 const std::function<void(const nn::LinearVisitor&)>& visit_linears);
int attach_loras(const std::vector<AppliedLora>& loras, QwenImageTransformer2DModel& transformer);
int attach_loras(const std::vector<AppliedLora>& loras, Qwen2_5_VLTextModel& text_encoder);

// Whether merge_lora can fold the layer's side path into its weight: the layer has one, its weight is
// lossless storage (not quantized codes), and a bias difference has a bias to go into.
bool can_merge_lora(const nn::Linear& layer);
// Replaces the layer's weight (and bias) by new tensors on its device and in its dtype holding
// weight + lora_up·lora_down + lora_diff (computed in f32), and drops the side path.
void merge_lora(nn::Linear& layer);

}  // namespace canvas
