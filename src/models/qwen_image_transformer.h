// QwenImageTransformer2DModel (diffusers): the MMDiT of Qwen-Image. Text and image tokens keep separate
// weights (dual-stream blocks) and meet in one joint attention over [text, image].
#pragma once

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "models/nn.h"

namespace canvas {

struct QwenImageTransformerConfig {
  int64_t patch_size = 2;
  int64_t in_channels = 64;
  int64_t out_channels = 16;
  int64_t num_layers = 0;
  int64_t attention_head_dim = 0;
  int64_t num_attention_heads = 0;
  int64_t joint_attention_dim = 0;
  std::array<int64_t, 3> axes_dims_rope{};
  bool zero_cond_t = false;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  static QwenImageTransformerConfig from_json(const nlohmann::json& config,
                                              const std::string& file_for_messages);
  static QwenImageTransformerConfig from_file(const std::filesystem::path& config_json);
  // For a checkpoint that comes without its config.json (a ComfyUI or GGUF file): the sizes from the tensor
  // shapes (img_in, txt_in, proj_out, the blocks' query norms and count). The RoPE axes leave no trace in
  // the weights; Qwen-Image's (16, 56, 56) are taken for its head size 128, and other head sizes throw
  // canvas::Error asking for the config. A patch size of 2 is assumed, as every Qwen-Image model has.
  static QwenImageTransformerConfig from_weights(const WeightSource& weights);
};

// The layout of one image in the packed token sequence: frames x height x width patches.
struct ImageShape {
  int64_t frames = 1, height = 0, width = 0;
  int64_t tokens() const { return frames * height * width; }
};

// Rotary tables for one forward: one angle per rotated pair, interleaved layout.
struct QwenImageRotary {
  Tensor image_cos, image_sin;  // [image_tokens, head_dim / 2]
  Tensor text_cos, text_sin;    // [text_tokens, head_dim / 2]
};

// A block's adaLN parameters for one timestep embedding: [B, 6 * dim] per stream, in the order
// shift1, scale1, gate1, shift2, scale2, gate2. With zero_cond_t the image stream's has batch 2B: the
// first B rows for the generated image's tokens, the last B for the reference images'.
struct BlockModulation {
  Tensor image;
  Tensor text;
};

// What forward hands the first block: embedded image and text tokens and the joint key mask.
struct QwenImageBlockInputs {
  Tensor image;           // [B, image_tokens, dim]
  Tensor text;            // [B, text_tokens, dim]
  Tensor joint_key_mask;  // [B, text + image], undefined when every key may be attended
  int64_t target_tokens = 0;
};

// The joint attention's queries, keys and values over [text, image]: [B, tokens, heads, head_dim] each.
struct JointProjections {
  Tensor query, key, value;
};

// Scaled dot-product attention over [B, tokens, heads, head_dim] projections (any number of heads: a
// sequence-parallel device attends with its share), returning [B, tokens, heads * head_dim].
// joint_key_mask: [B, tokens] keys that may be attended, undefined when all may.
Tensor joint_attention(const JointProjections& projections, const Tensor& joint_key_mask);

struct QwenImageAttention {
  nn::Linear to_q, to_k, to_v, to_out_0;
  nn::Linear add_q_proj, add_k_proj, add_v_proj, to_add_out;
  nn::RMSNorm norm_q, norm_k, norm_added_q, norm_added_k;
  int64_t heads = 0, head_dim = 0;

  // Returns {image output, text output}: project, joint_attention, project_out.
  std::pair<Tensor, Tensor> forward(const Tensor& image, const Tensor& text, const Tensor& joint_key_mask,
                                    const QwenImageRotary& rotary) const;
  // The projections of these text and image tokens, normed and rotated (rotary rows for these tokens).
  JointProjections project(const Tensor& image, const Tensor& text, const QwenImageRotary& rotary) const;
  // to_out / to_add_out of the attention output [B, text + image tokens, dim], text first.
  // Returns {image output, text output}.
  std::pair<Tensor, Tensor> project_out(const Tensor& joint, int64_t text_tokens) const;
};

struct FeedForward {
  nn::Linear net_0_proj, net_2;
  Tensor forward(const Tensor& x) const { return net_2(ops::gelu_tanh(net_0_proj(x))); }
};

// diffusers' _chunked_feed_forward over the token dimension: the 4 x dim hidden activation exists for
// `chunk_size` tokens at a time. Every token's arithmetic is unchanged.
Tensor chunked_feed_forward(const FeedForward& ff, const Tensor& x, int64_t chunk_size);

struct QwenImageTransformerBlock {
  nn::Linear img_mod_1, txt_mod_1;
  QwenImageAttention attn;
  FeedForward img_mlp, txt_mlp;
  float eps = 1e-6f;
  bool zero_cond_t = false;
  int64_t ff_chunk_size = 0;  // tokens per feed-forward chunk, 0 for all at once (enable_forward_chunking)

  BlockModulation modulation(const Tensor& temb) const;
  // image_tokens_of_target: with zero_cond_t, how many leading image tokens belong to the generated image.
  // Returns {text, image} hidden states like the reference.
  std::pair<Tensor, Tensor> forward(const Tensor& image, const Tensor& text, const Tensor& joint_key_mask,
                                    const BlockModulation& modulation, const QwenImageRotary& rotary,
                                    int64_t image_tokens_of_target) const;
  // forward in two halves around joint_attention, for executors that run the attention across devices:
  // the norm, modulation and projections before it, and the output projections, residuals and
  // feed-forward after it (`attention`: [B, text + image tokens, dim], text first).
  JointProjections attention_inputs(const Tensor& image, const Tensor& text,
                                    const BlockModulation& modulation, const QwenImageRotary& rotary,
                                    int64_t image_tokens_of_target) const;
  std::pair<Tensor, Tensor> attention_residual(const Tensor& image, const Tensor& text,
                                               const Tensor& attention, const BlockModulation& modulation,
                                               int64_t image_tokens_of_target) const;
  // Stores every linear layer's weight in `format`; the attention's RMSNorms stay as they are.
  void quantize_weights(WeightFormat format);
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
  void visit_linears(const std::string& prefix, const nn::LinearVisitor& visitor);
};

class QwenImageTransformer2DModel {
 public:
  QwenImageTransformer2DModel(const QwenImageTransformerConfig& config, const WeightSource& weights);

  // hidden_states [B, image_tokens, in_channels] (packed latents), encoder_hidden_states [B, T, joint_dim],
  // encoder_hidden_states_mask [B, T] (undefined = all valid), timestep [B] as the pipeline passes it
  // (sigma, i.e. t / 1000), img_shapes: the images in the sequence (the first is the generated one).
  // Returns [B, image_tokens, patch_size^2 * out_channels].
  Tensor forward(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                 const Tensor& encoder_hidden_states_mask, const Tensor& timestep,
                 const std::vector<ImageShape>& img_shapes) const;
  // The same with rotary tables from rotary(), which depend only on the image and text sizes: a
  // pipeline builds them once per job instead of once per step.
  Tensor forward(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                 const Tensor& encoder_hidden_states_mask, const Tensor& timestep,
                 const std::vector<ImageShape>& img_shapes, const QwenImageRotary& rotary_tables) const;

  // The pieces of forward, for executors that schedule blocks themselves: embed, then every block with
  // its modulation(block_timestep_embedding(t)), then finish.
  QwenImageBlockInputs embed(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                             const Tensor& encoder_hidden_states_mask,
                             const std::vector<ImageShape>& img_shapes,
                             const QwenImageRotary& rotary_tables) const;
  // img_in, and txt_norm + txt_in, of any run of tokens (a sequence-parallel device's share): {image, text}.
  std::pair<Tensor, Tensor> embed_tokens(const Tensor& hidden_states,
                                         const Tensor& encoder_hidden_states) const;
  // The text mask [B, T] as a key mask over the joint [text, image] sequence; undefined when `mask` is.
  Tensor joint_key_mask(const Tensor& mask, int64_t image_tokens, Device device) const;
  // The embedding the blocks' modulation reads: with zero_cond_t, rows [t, 0].
  Tensor block_timestep_embedding(const Tensor& timestep, DType dtype) const;
  // norm_out (from the block embedding) and proj_out.
  Tensor finish(const Tensor& image, const Tensor& block_temb) const;
  Tensor timestep_embedding(const Tensor& timestep, DType dtype) const;
  QwenImageRotary rotary(const std::vector<ImageShape>& img_shapes, int64_t text_tokens, Device device,
                         DType dtype) const;

  // Every weight the checkpoint holds for `config`, by diffusers name, with its shape: what the
  // constructor loads. Memory planning and the synthetic-checkpoint tool count bytes from it.
  static std::vector<std::pair<std::string, Shape>> parameter_shapes(
      const QwenImageTransformerConfig& config);

  // Runs every block's feed-forward `chunk_size` tokens at a time (0: all at once), lowering the
  // activation peak for the same result.
  void enable_forward_chunking(int64_t chunk_size);
  int64_t forward_chunk_size() const;

  const QwenImageTransformerConfig& config() const { return config_; }
  std::vector<QwenImageTransformerBlock>& blocks() { return transformer_blocks_; }
  const std::vector<QwenImageTransformerBlock>& blocks() const { return transformer_blocks_; }
  void visit(const nn::ParameterVisitor& visitor);
  // Visits the weights outside the transformer blocks.
  void visit_shared(const nn::ParameterVisitor& visitor);
  // Visits every linear layer, blocks included, by its diffusers module path.
  void visit_linears(const nn::LinearVisitor& visitor);
  // Quantizes the transformer blocks' linear layers (host weights). Embedders, norms, img_in, txt_in,
  // norm_out and proj_out keep their precision: they are small and sit where errors reach every token.
  void quantize_block_weights(WeightFormat format);

 private:
  QwenImageTransformerConfig config_;
  nn::Linear timestep_embedder_linear_1_, timestep_embedder_linear_2_;
  nn::RMSNorm txt_norm_;
  nn::Linear img_in_, txt_in_;
  std::vector<QwenImageTransformerBlock> transformer_blocks_;
  nn::Linear norm_out_linear_, proj_out_;
};

}  // namespace canvas
