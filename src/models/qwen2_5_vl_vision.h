// The vision tower of Qwen2.5-VL (transformers' Qwen2_5_VisionTransformerPretrainedModel), which turns the
// processor's patches (pipeline/qwen2_vl_image_processor.h) into the image embeddings the text model reads
// in place of its <|image_pad|> tokens. Qwen-Image-Edit encodes its condition pictures with it.
#pragma once

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/nn.h"

namespace canvas {

struct Qwen2_5_VLVisionConfig {
  int64_t depth = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;
  int64_t out_hidden_size = 0;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  // In pixels: a window spans window_size / patch_size patches a side.
  int64_t window_size = 112;
  // Blocks that attend over each whole image; the others attend within windows.
  std::vector<int64_t> fullatt_block_indexes;
  double rope_theta = 10000.0;

  int64_t head_dim() const { return hidden_size / num_heads; }
  // Reads `vision_config` of a text_encoder/config.json, in both layouts (in_chans in the published flat
  // files, in_channels and rope_parameters from transformers >= 5).
  static Qwen2_5_VLVisionConfig from_json(const nlohmann::json& config, const std::string& file_for_messages);
  static Qwen2_5_VLVisionConfig from_file(const std::filesystem::path& config_json);
};

struct Qwen2_5_VLVisionAttention {
  nn::Linear qkv, proj;
  int64_t num_heads = 0, head_dim = 0;

  // hidden_states [L, hidden]; cos/sin [L, head_dim / 2]; attention runs within each segment
  // [cu_seqlens[i], cu_seqlens[i + 1]).
  Tensor forward(const Tensor& hidden_states, const std::vector<int64_t>& cu_seqlens, const Tensor& cos,
                 const Tensor& sin) const;
};

// Qwen2_5_VLMLP with bias: down_proj(silu(gate_proj(x)) * up_proj(x)).
struct Qwen2_5_VLMLP {
  nn::Linear gate_proj, up_proj, down_proj;
  Tensor forward(const Tensor& x) const;
};

struct Qwen2_5_VLVisionBlock {
  nn::RMSNorm norm1, norm2;
  Qwen2_5_VLVisionAttention attn;
  Qwen2_5_VLMLP mlp;

  Tensor forward(const Tensor& hidden_states, const std::vector<int64_t>& cu_seqlens, const Tensor& cos,
                 const Tensor& sin) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// ln_q (RMSNorm over each patch), then each group of spatial_merge_size^2 consecutive patches concatenated
// and passed through Linear, GELU (erf), Linear.
struct Qwen2_5_VLPatchMerger {
  nn::RMSNorm ln_q;
  nn::Linear mlp_0, mlp_2;  // mlp.0 and mlp.2 of the reference's nn.Sequential
  Tensor forward(const Tensor& x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// The token order of window attention for a set of images (transformers' get_window_index).
struct VisionWindows {
  // For each merged token (a group of spatial_merge_size^2 patches) in window order, its index in the
  // processor's order.
  std::vector<int64_t> window_index;
  // Window boundaries in patches, starting at 0; windows cut off by the image's edge are shorter, and
  // empty windows are dropped.
  std::vector<int64_t> cu_window_seqlens;
};
VisionWindows get_window_index(const std::vector<std::array<int64_t, 3>>& grid_thw,
                               const Qwen2_5_VLVisionConfig& config);

class Qwen2_5_VisionTransformerPretrainedModel {
 public:
  // `weights` uses transformers' canonical names (`model.visual.*`); io/model_layout.h maps the older
  // `visual.*` onto them.
  Qwen2_5_VisionTransformerPretrainedModel(const Qwen2_5_VLVisionConfig& config, const WeightSource& weights);

  // pixel_values [sum of t*h*w, in_channels * temporal_patch_size * patch_size^2] as the processor lays
  // them out; grid_thw the (t, h, w) patch grid of each image. Returns the merged image embeddings
  // [sum of t*h*w / spatial_merge_size^2, out_hidden_size] in the processor's order, in `activation_dtype`.
  // `gate`, when given, is told before and after each block runs (weight streaming).
  Tensor forward(const Tensor& pixel_values, const std::vector<std::array<int64_t, 3>>& grid_thw,
                 DType activation_dtype = DType::F32, nn::BlockGate* gate = nullptr) const;

  static std::vector<std::pair<std::string, Shape>> parameter_shapes(const Qwen2_5_VLVisionConfig& config);

  const Qwen2_5_VLVisionConfig& config() const { return config_; }
  void visit(const nn::ParameterVisitor& visitor);
  // Visits the weights outside the blocks (patch embedding and merger).
  void visit_shared(const nn::ParameterVisitor& visitor);
  std::vector<Qwen2_5_VLVisionBlock>& blocks() { return blocks_; }
  const std::vector<Qwen2_5_VLVisionBlock>& blocks() const { return blocks_; }

 private:
  // Rotary cos/sin tables [L, head_dim / 2] for the patches in window order.
  std::pair<Tensor, Tensor> rotary_tables(const std::vector<std::array<int64_t, 3>>& grid_thw,
                                          const std::vector<int64_t>& window_index, Device device,
                                          DType dtype) const;

  Qwen2_5_VLVisionConfig config_;
  Tensor patch_embed_weight_;  // patch_embed.proj, the Conv3d kernel flattened to [hidden, patch values]
  std::vector<Qwen2_5_VLVisionBlock> blocks_;
  Qwen2_5_VLPatchMerger merger_;
};

}  // namespace canvas
