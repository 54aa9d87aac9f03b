// The language model of Qwen2.5-VL (transformers' Qwen2_5_VLTextModel), Qwen-Image's text encoder: Qwen-Image
// encodes prompts with it and reads the final hidden state. Text alone goes through `forward`; text with
// pictures (Qwen-Image-Edit) is embedded with `embed`, gets the vision tower's rows and 3D M-RoPE positions
// from models/qwen2_5_vl_model.h, and runs through `forward_embeds`.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "models/nn.h"

namespace canvas {

struct Qwen2_5_VLTextConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 1e6;
  // Rotary pairs given to the temporal, height and width position rows, in that order.
  std::vector<int64_t> mrope_section;

  bool operator==(const Qwen2_5_VLTextConfig&) const = default;
  // Reads both layouts: the flat keys of the published Qwen-Image text_encoder/config.json and the nested
  // `text_config` that transformers >= 5 writes.
  static Qwen2_5_VLTextConfig from_json(const nlohmann::json& config, const std::string& file_for_messages);
  static Qwen2_5_VLTextConfig from_file(const std::filesystem::path& config_json);
};

struct Qwen2_5_VLAttention {
  nn::Linear q_proj, k_proj, v_proj, o_proj;
  int64_t num_heads = 0, num_key_value_heads = 0, head_dim = 0;

  // cos/sin: [L, head_dim / 2] rotary tables for the half-split layout.
  Tensor forward(const Tensor& hidden_states, const Tensor& cos, const Tensor& sin,
                 const ops::AttentionMask& mask) const;
};

struct Qwen2MLP {
  nn::Linear gate_proj, up_proj, down_proj;
  Tensor forward(const Tensor& x) const;
};

struct Qwen2_5_VLDecoderLayer {
  Qwen2_5_VLAttention self_attn;
  Qwen2MLP mlp;
  nn::RMSNorm input_layernorm, post_attention_layernorm;

  Tensor forward(const Tensor& hidden_states, const Tensor& cos, const Tensor& sin,
                 const ops::AttentionMask& mask) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

class Qwen2_5_VLTextModel {
 public:
  // `weights` uses transformers' canonical names (`model.language_model.*`); see io/model_layout.h for
  // how older checkpoints are mapped onto them.
  Qwen2_5_VLTextModel(const Qwen2_5_VLTextConfig& config, const WeightSource& weights);

  // Text: input_ids [B, L] (i32/i64), attention_mask [B, L] (nonzero for real tokens, padding on the right),
  // positions 0..L-1 on all three M-RoPE rows (what transformers gives when no position_ids are passed).
  // Returns the last hidden state after the final norm, [B, L, hidden_size], in `activation_dtype`.
  // `gate`, when given, is told before and after each decoder layer runs (weight streaming).
  Tensor forward(const Tensor& input_ids, const Tensor& attention_mask, DType activation_dtype = DType::F32,
                 nn::BlockGate* gate = nullptr) const;

  // embed_tokens: input_ids [B, L] (i32/i64, any device) -> [B, L, hidden_size] in `activation_dtype` on the
  // model's device.
  Tensor embed(const Tensor& input_ids, DType activation_dtype = DType::F32) const;

  // The decoder over given input embeddings (transformers' forward with inputs_embeds and position_ids).
  // inputs_embeds [B, L, hidden_size] in the activation dtype, on the model's device; position_ids [3, B, L]
  // (i32/i64, any device): the temporal, height and width position of each token, the rotary pairs of
  // mrope_section[i] turning with row i; attention_mask [B, L] as in `forward`. Attention is causal.
  // Returns the last hidden state after the final norm, [B, L, hidden_size], in the activation dtype.
  Tensor forward_embeds(const Tensor& inputs_embeds, const Tensor& position_ids, const Tensor& attention_mask,
                        nn::BlockGate* gate = nullptr) const;

  // Every weight the constructor loads for `config`, by canonical name, with its shape. The checkpoint's
  // lm_head and vision tower are not among them: text-to-image never reads them.
  static std::vector<std::pair<std::string, Shape>> parameter_shapes(const Qwen2_5_VLTextConfig& config);

  const Qwen2_5_VLTextConfig& config() const { return config_; }
  void visit(const nn::ParameterVisitor& visitor);
  // Visits the weights outside the decoder layers.
  void visit_shared(const nn::ParameterVisitor& visitor);
  // Visits every linear layer by its transformers module path ("model.language_model.layers.N.…").
  void visit_linears(const nn::LinearVisitor& visitor);
  std::vector<Qwen2_5_VLDecoderLayer>& layers() { return layers_; }
  const std::vector<Qwen2_5_VLDecoderLayer>& layers() const { return layers_; }

 private:
  // Rotary cos/sin tables [B, L, head_dim / 2] for positions [3, B, L] (row-major) on the host. A plain
  // vector rather than a tensor, so that the text path holds no position tensor while its layers run and
  // its memory stays what the planner's dry run measures.
  std::pair<Tensor, Tensor> rotary_tables(std::span<const int64_t> positions, int64_t batch, int64_t length,
                                          DType dtype) const;
  // The decoder layers and the final norm over inputs_embeds [B, L, hidden_size].
  Tensor decode(const Tensor& inputs_embeds, const std::pair<Tensor, Tensor>& rotary,
                const Tensor& attention_mask, nn::BlockGate* gate) const;

  Qwen2_5_VLTextConfig config_;
  nn::Embedding embed_tokens_;
  std::vector<Qwen2_5_VLDecoderLayer> layers_;
  nn::RMSNorm norm_;
};

}  // namespace canvas
