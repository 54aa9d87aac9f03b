#include "models/qwen_image_transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "io/json_config.h"

namespace canvas {

namespace {

// The k-th of the six [B, dim] chunks of a block's modulation, shaped [B, 1, dim] to broadcast over tokens.
Tensor modulation_chunk(const Tensor& params, int index, int64_t dim) {
  return params.slice(1, index * dim, (index + 1) * dim).unsqueeze(1);
}

// Applies adaLN chunks (shift, scale at `first_chunk`, `first_chunk + 1`) to the image stream. With
// zero_cond_t the generated image's tokens take the first half of the parameter rows and the reference
// images' tokens the second half, as the reference's torch.where over modulate_index does.
Tensor modulate_image(const Tensor& x, const Tensor& params, int first_chunk, int64_t dim, bool zero_cond_t,
                      int64_t target_tokens) {
  if (!zero_cond_t) {
    return ops::modulate(x, modulation_chunk(params, first_chunk, dim),
                         modulation_chunk(params, first_chunk + 1, dim));
  }
  int64_t batch = x.dim(0);
  Tensor target_params = params.slice(0, 0, batch), reference_params = params.slice(0, batch, 2 * batch);
  Tensor target =
      ops::modulate(x.slice(1, 0, target_tokens), modulation_chunk(target_params, first_chunk, dim),
                    modulation_chunk(target_params, first_chunk + 1, dim));
  if (target_tokens == x.dim(1)) return target;
  Tensor reference =
      ops::modulate(x.slice(1, target_tokens, x.dim(1)), modulation_chunk(reference_params, first_chunk, dim),
                    modulation_chunk(reference_params, first_chunk + 1, dim));
  Tensor parts[] = {target, reference};
  return ops::concat(parts, 1);
}

// residual + gate * x for the image stream, with the same zero_cond_t split as modulate_image.
Tensor gated_add_image(const Tensor& residual, const Tensor& params, int gate_chunk, int64_t dim,
                       const Tensor& x, bool zero_cond_t, int64_t target_tokens) {
  if (!zero_cond_t) return ops::gated_add(residual, modulation_chunk(params, gate_chunk, dim), x);
  int64_t batch = x.dim(0), tokens = x.dim(1);
  Tensor target = ops::gated_add(residual.slice(1, 0, target_tokens),
                                 modulation_chunk(params.slice(0, 0, batch), gate_chunk, dim),
                                 x.slice(1, 0, target_tokens));
  if (target_tokens == tokens) return target;
  Tensor reference = ops::gated_add(residual.slice(1, target_tokens, tokens),
                                    modulation_chunk(params.slice(0, batch, 2 * batch), gate_chunk, dim),
                                    x.slice(1, target_tokens, tokens));
  Tensor parts[] = {target, reference};
  return ops::concat(parts, 1);
}

// Inverse frequencies of one rotary axis as the reference computes them in f32: 1 / theta^(2i / dim).
std::vector<float> axis_inverse_frequencies(int64_t axis_dim) {
  std::vector<float> frequencies(static_cast<size_t>(axis_dim / 2));
  for (int64_t i = 0; i < axis_dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(axis_dim);
    frequencies[i] = 1.0f / std::pow(10000.0f, exponent);
  }
  return frequencies;
}

// Positions along an image axis of `extent` patches, centred as the reference's scale_rope does:
// -(extent - extent/2) .. extent/2 - 1.
int64_t centred_position(int64_t index, int64_t extent) {
  return index - (extent - extent / 2);
}

}  // namespace

QwenImageTransformerConfig QwenImageTransformerConfig::from_json(const nlohmann::json& json,
                                                                 const std::string& file) {
  QwenImageTransformerConfig config;
  config.patch_size = config_int_at_least_or(json, "patch_size", 1, 2, file);
  config.in_channels = config_int_at_least_or(json, "in_channels", 1, 64, file);
  config.out_channels = config_int_at_least_or(json, "out_channels", 1, config.in_channels, file);
  config.num_layers = config_int_at_least(json, "num_layers", 0, file);
  config.attention_head_dim = config_int_at_least(json, "attention_head_dim", 1, file);
  config.num_attention_heads = config_int_at_least(json, "num_attention_heads", 1, file);
  config.joint_attention_dim = config_int_at_least(json, "joint_attention_dim", 1, file);
  std::vector<int64_t> axes = config_int_list(json, "axes_dims_rope", file);
  check(axes.size() == 3, file + ": axes_dims_rope must have three entries");
  config.axes_dims_rope = {axes[0], axes[1], axes[2]};
  config.zero_cond_t = config_bool_or(json, "zero_cond_t", false, file);
  check(!config_bool_or(json, "guidance_embeds", false, file),
        file + ": guidance_embeds=true (a guidance-distilled variant) is not supported");
  check(!config_bool_or(json, "use_additional_t_cond", false, file),
        file + ": use_additional_t_cond (Qwen-Image-Layered) is not supported");
  check(!config_bool_or(json, "use_layer3d_rope", false, file),
        file + ": use_layer3d_rope (Qwen-Image-Layered) is not supported");
  check(axes[0] % 2 == 0 && axes[1] % 2 == 0 && axes[2] % 2 == 0 &&
            axes[0] + axes[1] + axes[2] == config.attention_head_dim,
        file + ": axes_dims_rope must be even and sum to attention_head_dim " +
            std::to_string(config.attention_head_dim));
  return config;
}

QwenImageTransformerConfig QwenImageTransformerConfig::from_file(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

QwenImageTransformerConfig QwenImageTransformerConfig::from_weights(const WeightSource& weights) {
  const std::string& source = weights.description();
  auto shape_of = [&](const std::string& name, size_t dims) {
    check(weights.contains(name), "cannot configure the transformer " + source +
                                      " from its weights: it has no '" + name +
                                      "' tensor; put its diffusers config.json in the file's folder");
    const Shape& shape = weights.info(name).shape;
    check(shape.size() == dims, "the transformer " + source + "'s '" + name + "' has shape " +
                                    shape_str(shape) + ", not the " + std::to_string(dims) +
                                    "-D shape of a Qwen-Image transformer");
    return shape;
  };
  QwenImageTransformerConfig config;
  const Shape image_in = shape_of("img_in.weight", 2);
  const int64_t inner_dim = image_in[0];
  config.in_channels = image_in[1];
  config.joint_attention_dim = shape_of("txt_in.weight", 2)[1];
  config.out_channels = shape_of("proj_out.weight", 2)[0] / (config.patch_size * config.patch_size);
  config.attention_head_dim = shape_of("transformer_blocks.0.attn.norm_q.weight", 1)[0];
  check(config.attention_head_dim > 0 && inner_dim % config.attention_head_dim == 0,
        "the transformer " + source + "'s width " + std::to_string(inner_dim) +
            " is not a whole number of heads of " + std::to_string(config.attention_head_dim));
  config.num_attention_heads = inner_dim / config.attention_head_dim;
  while (weights.contains("transformer_blocks." + std::to_string(config.num_layers) + ".attn.norm_q.weight"))
    ++config.num_layers;
  // Blocks past a gap would be left out silently.
  constexpr std::string_view kBlocks = "transformer_blocks.";
  for (const std::string& name : weights.names()) {
    if (!name.starts_with(kBlocks)) continue;
    const int64_t block = std::atoll(name.c_str() + kBlocks.size());
    check(block < config.num_layers, "the transformer " + source + " has '" + name + "' but block " +
                                         std::to_string(config.num_layers) + " has no attn.norm_q.weight");
  }
  constexpr int64_t kQwenImageHeadDim = 128;
  check(config.attention_head_dim == kQwenImageHeadDim,
        "cannot infer the RoPE axes (axes_dims_rope) of the transformer " + source + " with head size " +
            std::to_string(config.attention_head_dim) + " from its weights (Qwen-Image's head size is " +
            std::to_string(kQwenImageHeadDim) + "); put its diffusers config.json in the file's folder");
  config.axes_dims_rope = {16, 56, 56};
  return config;
}

Tensor joint_attention(const JointProjections& projections, const Tensor& joint_key_mask) {
  const Tensor& query = projections.query;
  const int64_t batch = query.dim(0), tokens = query.dim(1), heads = query.dim(2), head_dim = query.dim(3);
  Tensor joint = ops::attention(query.transpose(1, 2), projections.key.transpose(1, 2),
                                projections.value.transpose(1, 2), ops::AttentionMask{joint_key_mask, false},
                                1.0f / std::sqrt(static_cast<float>(head_dim)));
  return joint.transpose(1, 2).reshape({batch, tokens, heads * head_dim});
}

JointProjections QwenImageAttention::project(const Tensor& image, const Tensor& text,
                                             const QwenImageRotary& rotary) const {
  int64_t batch = image.dim(0);
  auto heads_of = [&](const nn::Linear& projection, const Tensor& x) {
    return projection(x).view({batch, x.dim(1), heads, head_dim});
  };
  Tensor img_query = ops::rope(norm_q(heads_of(to_q, image)), rotary.image_cos, rotary.image_sin,
                               ops::RopeLayout::Interleaved);
  Tensor img_key = ops::rope(norm_k(heads_of(to_k, image)), rotary.image_cos, rotary.image_sin,
                             ops::RopeLayout::Interleaved);
  Tensor txt_query = ops::rope(norm_added_q(heads_of(add_q_proj, text)), rotary.text_cos, rotary.text_sin,
                               ops::RopeLayout::Interleaved);
  Tensor txt_key = ops::rope(norm_added_k(heads_of(add_k_proj, text)), rotary.text_cos, rotary.text_sin,
                             ops::RopeLayout::Interleaved);
  // Joint attention over [text, image].
  Tensor queries[] = {txt_query, img_query};
  Tensor keys[] = {txt_key, img_key};
  Tensor values[] = {heads_of(add_v_proj, text), heads_of(to_v, image)};
  return {ops::concat(queries, 1), ops::concat(keys, 1), ops::concat(values, 1)};
}

std::pair<Tensor, Tensor> QwenImageAttention::project_out(const Tensor& joint, int64_t text_tokens) const {
  Tensor image_out = to_out_0(joint.slice(1, text_tokens, joint.dim(1)));
  Tensor text_out = to_add_out(joint.slice(1, 0, text_tokens));
  return {image_out, text_out};
}

std::pair<Tensor, Tensor> QwenImageAttention::forward(const Tensor& image, const Tensor& text,
                                                      const Tensor& joint_key_mask,
                                                      const QwenImageRotary& rotary) const {
  return project_out(joint_attention(project(image, text, rotary), joint_key_mask), text.dim(1));
}

BlockModulation QwenImageTransformerBlock::modulation(const Tensor& temb) const {
  Tensor activated = ops::silu(temb);
  // With zero_cond_t the embedding rows are [timestep, zero timestep]; only the first half drives text.
  Tensor text_rows = zero_cond_t ? activated.slice(0, 0, temb.dim(0) / 2) : activated;
  return {img_mod_1(activated), txt_mod_1(text_rows)};
}

Tensor chunked_feed_forward(const FeedForward& ff, const Tensor& x, int64_t chunk_size) {
  const int64_t tokens = x.dim(1);
  if (chunk_size <= 0 || tokens <= chunk_size) return ff.forward(x);
  std::vector<Tensor> outputs;
  for (int64_t start = 0; start < tokens; start += chunk_size)
    outputs.push_back(ff.forward(x.slice(1, start, std::min(start + chunk_size, tokens))));
  return ops::concat(outputs, 1);
}

std::pair<Tensor, Tensor> QwenImageTransformerBlock::forward(const Tensor& image, const Tensor& text,
                                                             const Tensor& joint_key_mask,
                                                             const BlockModulation& modulation,
                                                             const QwenImageRotary& rotary,
                                                             int64_t image_tokens_of_target) const {
  JointProjections projections = attention_inputs(image, text, modulation, rotary, image_tokens_of_target);
  return attention_residual(image, text, joint_attention(projections, joint_key_mask), modulation,
                            image_tokens_of_target);
}

JointProjections QwenImageTransformerBlock::attention_inputs(const Tensor& image, const Tensor& text,
                                                             const BlockModulation& modulation,
                                                             const QwenImageRotary& rotary,
                                                             int64_t image_tokens_of_target) const {
  int64_t dim = image.dim(-1);
  Tensor img_modulated = modulate_image(ops::layer_norm(image, {}, {}, eps), modulation.image, 0, dim,
                                        zero_cond_t, image_tokens_of_target);
  Tensor txt_modulated =
      ops::modulate(ops::layer_norm(text, {}, {}, eps), modulation_chunk(modulation.text, 0, dim),
                    modulation_chunk(modulation.text, 1, dim));
  return attn.project(img_modulated, txt_modulated, rotary);
}

std::pair<Tensor, Tensor> QwenImageTransformerBlock::attention_residual(
    const Tensor& image, const Tensor& text, const Tensor& attention, const BlockModulation& modulation,
    int64_t image_tokens_of_target) const {
  int64_t dim = image.dim(-1);
  const Tensor& img_params = modulation.image;
  const Tensor& txt_params = modulation.text;
  auto [img_attn_output, txt_attn_output] = attn.project_out(attention, text.dim(1));

  Tensor image_hidden =
      gated_add_image(image, img_params, 2, dim, img_attn_output, zero_cond_t, image_tokens_of_target);
  Tensor text_hidden = ops::gated_add(text, modulation_chunk(txt_params, 2, dim), txt_attn_output);

  Tensor img_modulated2 = modulate_image(ops::layer_norm(image_hidden, {}, {}, eps), img_params, 3, dim,
                                         zero_cond_t, image_tokens_of_target);
  image_hidden = gated_add_image(image_hidden, img_params, 5, dim,
                                 chunked_feed_forward(img_mlp, img_modulated2, ff_chunk_size), zero_cond_t,
                                 image_tokens_of_target);

  Tensor txt_modulated2 =
      ops::modulate(ops::layer_norm(text_hidden, {}, {}, eps), modulation_chunk(txt_params, 3, dim),
                    modulation_chunk(txt_params, 4, dim));
  text_hidden = ops::gated_add(text_hidden, modulation_chunk(txt_params, 5, dim),
                               chunked_feed_forward(txt_mlp, txt_modulated2, ff_chunk_size));
  return {text_hidden, image_hidden};
}

void QwenImageTransformerBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  img_mod_1.visit(prefix + "img_mod.1", visitor);
  txt_mod_1.visit(prefix + "txt_mod.1", visitor);
  attn.to_q.visit(prefix + "attn.to_q", visitor);
  attn.to_k.visit(prefix + "attn.to_k", visitor);
  attn.to_v.visit(prefix + "attn.to_v", visitor);
  attn.to_out_0.visit(prefix + "attn.to_out.0", visitor);
  attn.add_q_proj.visit(prefix + "attn.add_q_proj", visitor);
  attn.add_k_proj.visit(prefix + "attn.add_k_proj", visitor);
  attn.add_v_proj.visit(prefix + "attn.add_v_proj", visitor);
  attn.to_add_out.visit(prefix + "attn.to_add_out", visitor);
  attn.norm_q.visit(prefix + "attn.norm_q", visitor);
  attn.norm_k.visit(prefix + "attn.norm_k", visitor);
  attn.norm_added_q.visit(prefix + "attn.norm_added_q", visitor);
  attn.norm_added_k.visit(prefix + "attn.norm_added_k", visitor);
  img_mlp.net_0_proj.visit(prefix + "img_mlp.net.0.proj", visitor);
  img_mlp.net_2.visit(prefix + "img_mlp.net.2", visitor);
  txt_mlp.net_0_proj.visit(prefix + "txt_mlp.net.0.proj", visitor);
  txt_mlp.net_2.visit(prefix + "txt_mlp.net.2", visitor);
}

void QwenImageTransformerBlock::visit_linears(const std::string& prefix, const nn::LinearVisitor& visitor) {
  visitor(prefix + "img_mod.1", img_mod_1);
  visitor(prefix + "txt_mod.1", txt_mod_1);
  visitor(prefix + "attn.to_q", attn.to_q);
  visitor(prefix + "attn.to_k", attn.to_k);
  visitor(prefix + "attn.to_v", attn.to_v);
  visitor(prefix + "attn.to_out.0", attn.to_out_0);
  visitor(prefix + "attn.add_q_proj", attn.add_q_proj);
  visitor(prefix + "attn.add_k_proj", attn.add_k_proj);
  visitor(prefix + "attn.add_v_proj", attn.add_v_proj);
  visitor(prefix + "attn.to_add_out", attn.to_add_out);
  visitor(prefix + "img_mlp.net.0.proj", img_mlp.net_0_proj);
  visitor(prefix + "img_mlp.net.2", img_mlp.net_2);
  visitor(prefix + "txt_mlp.net.0.proj", txt_mlp.net_0_proj);
  visitor(prefix + "txt_mlp.net.2", txt_mlp.net_2);
}

void QwenImageTransformerBlock::quantize_weights(WeightFormat format) {
  visit_linears("", [&](const std::string&, nn::Linear& layer) { layer.quantize(format); });
}

QwenImageTransformer2DModel::QwenImageTransformer2DModel(const QwenImageTransformerConfig& config,
                                                         const WeightSource& weights)
    : config_(config) {
  const int64_t dim = config.inner_dim(), head_dim = config.attention_head_dim;
  // FeedForward's default mult of 4, as the reference builds it.
  const int64_t ff_dim = 4 * dim;
  constexpr float kEps = 1e-6f;
  constexpr int64_t kTimestepChannels = 256;
  timestep_embedder_linear_1_ =
      nn::Linear::load(weights, "time_text_embed.timestep_embedder.linear_1", kTimestepChannels, dim);
  timestep_embedder_linear_2_ =
      nn::Linear::load(weights, "time_text_embed.timestep_embedder.linear_2", dim, dim);
  txt_norm_ = nn::RMSNorm::load(weights, "txt_norm", config.joint_attention_dim, kEps);
  img_in_ = nn::Linear::load(weights, "img_in", config.in_channels, dim);
  txt_in_ = nn::Linear::load(weights, "txt_in", config.joint_attention_dim, dim);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    std::string prefix = "transformer_blocks." + std::to_string(i) + ".";
    QwenImageTransformerBlock block;
    block.img_mod_1 = nn::Linear::load(weights, prefix + "img_mod.1", dim, 6 * dim);
    block.txt_mod_1 = nn::Linear::load(weights, prefix + "txt_mod.1", dim, 6 * dim);
    QwenImageAttention& attn = block.attn;
    attn.to_q = nn::Linear::load(weights, prefix + "attn.to_q", dim, dim);
    attn.to_k = nn::Linear::load(weights, prefix + "attn.to_k", dim, dim);
    attn.to_v = nn::Linear::load(weights, prefix + "attn.to_v", dim, dim);
    attn.to_out_0 = nn::Linear::load(weights, prefix + "attn.to_out.0", dim, dim);
    attn.add_q_proj = nn::Linear::load(weights, prefix + "attn.add_q_proj", dim, dim);
    attn.add_k_proj = nn::Linear::load(weights, prefix + "attn.add_k_proj", dim, dim);
    attn.add_v_proj = nn::Linear::load(weights, prefix + "attn.add_v_proj", dim, dim);
    attn.to_add_out = nn::Linear::load(weights, prefix + "attn.to_add_out", dim, dim);
    attn.norm_q = nn::RMSNorm::load(weights, prefix + "attn.norm_q", head_dim, kEps);
    attn.norm_k = nn::RMSNorm::load(weights, prefix + "attn.norm_k", head_dim, kEps);
    attn.norm_added_q = nn::RMSNorm::load(weights, prefix + "attn.norm_added_q", head_dim, kEps);
    attn.norm_added_k = nn::RMSNorm::load(weights, prefix + "attn.norm_added_k", head_dim, kEps);
    attn.heads = config.num_attention_heads;
    attn.head_dim = head_dim;
    block.img_mlp = {nn::Linear::load(weights, prefix + "img_mlp.net.0.proj", dim, ff_dim),
                     nn::Linear::load(weights, prefix + "img_mlp.net.2", ff_dim, dim)};
    block.txt_mlp = {nn::Linear::load(weights, prefix + "txt_mlp.net.0.proj", dim, ff_dim),
                     nn::Linear::load(weights, prefix + "txt_mlp.net.2", ff_dim, dim)};
    block.eps = kEps;
    block.zero_cond_t = config.zero_cond_t;
    transformer_blocks_.push_back(std::move(block));
  }
  norm_out_linear_ = nn::Linear::load(weights, "norm_out.linear", dim, 2 * dim);
  proj_out_ =
      nn::Linear::load(weights, "proj_out", dim, config.patch_size * config.patch_size * config.out_channels);
}

Tensor QwenImageTransformer2DModel::timestep_embedding(const Tensor& timestep, DType dtype) const {
  // Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0, scale=1000): [cos, sin] of 1000 * t * f_i.
  constexpr int64_t kHalf = 128;
  std::vector<float> steps = timestep.to_floats();
  int64_t batch = static_cast<int64_t>(steps.size());
  std::vector<float> projected(static_cast<size_t>(batch * 2 * kHalf));
  const float log_period = static_cast<float>(std::log(10000.0));
  for (int64_t i = 0; i < kHalf; ++i) {
    float frequency = std::exp(-log_period * static_cast<float>(i) / static_cast<float>(kHalf));
    for (int64_t b = 0; b < batch; ++b) {
      float angle = 1000.0f * (steps[b] * frequency);
      projected[b * 2 * kHalf + i] = std::cos(angle);
      projected[b * 2 * kHalf + kHalf + i] = std::sin(angle);
    }
  }
  Device device = img_in_.weight.device();
  Tensor proj = Tensor::from_floats(projected, {batch, 2 * kHalf}).to(dtype).to(device);
  return timestep_embedder_linear_2_(ops::silu(timestep_embedder_linear_1_(proj)));
}

QwenImageRotary QwenImageTransformer2DModel::rotary(const std::vector<ImageShape>& img_shapes,
                                                    int64_t text_tokens, Device device, DType dtype) const {
  check(!img_shapes.empty(), "the transformer needs at least one image shape");
  const auto& axes = config_.axes_dims_rope;
  std::array<std::vector<float>, 3> frequencies = {axis_inverse_frequencies(axes[0]),
                                                   axis_inverse_frequencies(axes[1]),
                                                   axis_inverse_frequencies(axes[2])};
  const int64_t pairs = config_.attention_head_dim / 2;
  // Fills one token's row from its (frame, height, width) positions.
  auto fill_row = [&](float* cos_row, float* sin_row, std::array<int64_t, 3> positions) {
    int64_t pair = 0;
    for (int axis = 0; axis < 3; ++axis) {
      for (float frequency : frequencies[axis]) {
        float angle = static_cast<float>(positions[axis]) * frequency;
        cos_row[pair] = std::cos(angle);
        sin_row[pair] = std::sin(angle);
        ++pair;
      }
    }
  };

  int64_t image_tokens = 0, text_start = 0;
  for (const ImageShape& shape : img_shapes) {
    check(shape.frames > 0 && shape.height > 0 && shape.width > 0, "image shapes must be positive");
    image_tokens += shape.tokens();
    text_start = std::max({text_start, shape.height / 2, shape.width / 2});
  }
  std::vector<float> image_cos(image_tokens * pairs), image_sin(image_tokens * pairs);
  int64_t token = 0;
  for (size_t image_index = 0; image_index < img_shapes.size(); ++image_index) {
    const ImageShape& shape = img_shapes[image_index];
    for (int64_t f = 0; f < shape.frames; ++f) {
      for (int64_t y = 0; y < shape.height; ++y) {
        for (int64_t x = 0; x < shape.width; ++x, ++token) {
          fill_row(&image_cos[token * pairs], &image_sin[token * pairs],
                   {static_cast<int64_t>(image_index) + f, centred_position(y, shape.height),
                    centred_position(x, shape.width)});
        }
      }
    }
  }
  std::vector<float> text_cos(text_tokens * pairs), text_sin(text_tokens * pairs);
  for (int64_t t = 0; t < text_tokens; ++t) {
    int64_t position = text_start + t;
    fill_row(&text_cos[t * pairs], &text_sin[t * pairs], {position, position, position});
  }
  auto upload = [&](const std::vector<float>& values, int64_t rows) {
    return Tensor::from_floats(values, {rows, pairs}).to(dtype).to(device);
  };
  return {upload(image_cos, image_tokens), upload(image_sin, image_tokens), upload(text_cos, text_tokens),
          upload(text_sin, text_tokens)};
}

Tensor QwenImageTransformer2DModel::forward(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                                            const Tensor& encoder_hidden_states_mask, const Tensor& timestep,
                                            const std::vector<ImageShape>& img_shapes) const {
  check(encoder_hidden_states.ndim() == 3, "transformer encoder_hidden_states must be [B, T, C], got " +
                                               shape_str(encoder_hidden_states.shape()));
  return forward(
      hidden_states, encoder_hidden_states, encoder_hidden_states_mask, timestep, img_shapes,
      rotary(img_shapes, encoder_hidden_states.dim(1), img_in_.weight.device(), hidden_states.dtype()));
}

Tensor QwenImageTransformer2DModel::forward(const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                                            const Tensor& encoder_hidden_states_mask, const Tensor& timestep,
                                            const std::vector<ImageShape>& img_shapes,
                                            const QwenImageRotary& rope) const {
  check(timestep.numel() == hidden_states.dim(0), "one timestep per sample is needed");
  QwenImageBlockInputs inputs =
      embed(hidden_states, encoder_hidden_states, encoder_hidden_states_mask, img_shapes, rope);
  Tensor temb = block_timestep_embedding(timestep, hidden_states.dtype());
  for (const QwenImageTransformerBlock& block : transformer_blocks_) {
    std::tie(inputs.text, inputs.image) = block.forward(inputs.image, inputs.text, inputs.joint_key_mask,
                                                        block.modulation(temb), rope, inputs.target_tokens);
  }
  return finish(inputs.image, temb);
}

QwenImageBlockInputs QwenImageTransformer2DModel::embed(const Tensor& hidden_states,
                                                        const Tensor& encoder_hidden_states,
                                                        const Tensor& encoder_hidden_states_mask,
                                                        const std::vector<ImageShape>& img_shapes,
                                                        const QwenImageRotary& rope) const {
  check(hidden_states.ndim() == 3 && hidden_states.dim(2) == config_.in_channels,
        "transformer hidden_states must be [B, tokens, " + std::to_string(config_.in_channels) + "], got " +
            shape_str(hidden_states.shape()));
  check(encoder_hidden_states.ndim() == 3 && encoder_hidden_states.dim(0) == hidden_states.dim(0) &&
            encoder_hidden_states.dim(2) == config_.joint_attention_dim,
        "transformer encoder_hidden_states must be [B, T, " + std::to_string(config_.joint_attention_dim) +
            "], got " + shape_str(encoder_hidden_states.shape()));
  int64_t image_tokens = 0;
  for (const ImageShape& shape : img_shapes) image_tokens += shape.tokens();
  check(image_tokens == hidden_states.dim(1), "img_shapes describe " + std::to_string(image_tokens) +
                                                  " tokens but hidden_states has " +
                                                  std::to_string(hidden_states.dim(1)));
  check(rope.image_cos.dim(0) == image_tokens && rope.text_cos.dim(0) == encoder_hidden_states.dim(1),
        "rotary tables for " + std::to_string(rope.image_cos.dim(0)) + " image and " +
            std::to_string(rope.text_cos.dim(0)) + " text tokens do not fit this input");
  QwenImageBlockInputs inputs;
  std::tie(inputs.image, inputs.text) = embed_tokens(hidden_states, encoder_hidden_states);
  inputs.target_tokens = img_shapes.front().tokens();
  inputs.joint_key_mask = joint_key_mask(encoder_hidden_states_mask, image_tokens, img_in_.weight.device());
  return inputs;
}

std::pair<Tensor, Tensor> QwenImageTransformer2DModel::embed_tokens(
    const Tensor& hidden_states, const Tensor& encoder_hidden_states) const {
  Device device = img_in_.weight.device();
  return {img_in_(hidden_states.to(device)), txt_in_(txt_norm_(encoder_hidden_states.to(device)))};
}

Tensor QwenImageTransformer2DModel::joint_key_mask(const Tensor& mask, int64_t image_tokens,
                                                   Device device) const {
  if (!mask.defined()) return {};
  // Built once for every block: the text mask, then every image token attended.
  std::vector<float> values = mask.to_floats();
  const int64_t batch = mask.dim(0), text_tokens = mask.dim(1);
  std::vector<float> joint(static_cast<size_t>(batch * (text_tokens + image_tokens)), 1.0f);
  for (int64_t b = 0; b < batch; ++b)
    std::copy_n(values.begin() + b * text_tokens, text_tokens,
                joint.begin() + b * (text_tokens + image_tokens));
  return Tensor::from_floats(joint, {batch, text_tokens + image_tokens}).to(device);
}

Tensor QwenImageTransformer2DModel::block_timestep_embedding(const Tensor& timestep, DType dtype) const {
  if (!config_.zero_cond_t) return timestep_embedding(timestep, dtype);
  std::vector<float> values = timestep.to_floats();
  values.resize(values.size() * 2, 0.0f);
  return timestep_embedding(Tensor::from_floats(values, {static_cast<int64_t>(values.size())}), dtype);
}

void QwenImageTransformer2DModel::enable_forward_chunking(int64_t chunk_size) {
  check(chunk_size >= 0, "feed-forward chunk size must not be negative, got " + std::to_string(chunk_size));
  for (QwenImageTransformerBlock& block : transformer_blocks_) block.ff_chunk_size = chunk_size;
}

int64_t QwenImageTransformer2DModel::forward_chunk_size() const {
  return transformer_blocks_.empty() ? 0 : transformer_blocks_.front().ff_chunk_size;
}

Tensor QwenImageTransformer2DModel::finish(const Tensor& image, const Tensor& block_temb) const {
  Tensor temb = config_.zero_cond_t ? block_temb.slice(0, 0, block_temb.dim(0) / 2) : block_temb;
  // AdaLayerNormContinuous: scale comes before shift in the projection.
  Tensor emb = norm_out_linear_(ops::silu(temb));
  int64_t dim = config_.inner_dim();
  Tensor normed = ops::modulate(ops::layer_norm(image, {}, {}, 1e-6f),
                                emb.slice(1, dim, 2 * dim).unsqueeze(1), emb.slice(1, 0, dim).unsqueeze(1));
  return proj_out_(normed);
}

std::vector<std::pair<std::string, Shape>> QwenImageTransformer2DModel::parameter_shapes(
    const QwenImageTransformerConfig& config) {
  const int64_t dim = config.inner_dim(), head_dim = config.attention_head_dim, ff_dim = 4 * dim;
  std::vector<std::pair<std::string, Shape>> shapes;
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    shapes.push_back({name + ".weight", {out, in}});
    shapes.push_back({name + ".bias", {out}});
  };
  linear("time_text_embed.timestep_embedder.linear_1", 256, dim);
  linear("time_text_embed.timestep_embedder.linear_2", dim, dim);
  shapes.push_back({"txt_norm.weight", {config.joint_attention_dim}});
  linear("img_in", config.in_channels, dim);
  linear("txt_in", config.joint_attention_dim, dim);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    std::string prefix = "transformer_blocks." + std::to_string(i) + ".";
    linear(prefix + "img_mod.1", dim, 6 * dim);
    linear(prefix + "txt_mod.1", dim, 6 * dim);
    for (const char* projection :
         {"to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"}) {
      linear(prefix + "attn." + projection, dim, dim);
    }
    for (const char* norm : {"norm_q", "norm_k", "norm_added_q", "norm_added_k"}) {
      shapes.push_back({prefix + "attn." + norm + ".weight", {head_dim}});
    }
    linear(prefix + "img_mlp.net.0.proj", dim, ff_dim);
    linear(prefix + "img_mlp.net.2", ff_dim, dim);
    linear(prefix + "txt_mlp.net.0.proj", dim, ff_dim);
    linear(prefix + "txt_mlp.net.2", ff_dim, dim);
  }
  linear("norm_out.linear", dim, 2 * dim);
  linear("proj_out", dim, config.patch_size * config.patch_size * config.out_channels);
  return shapes;
}

void QwenImageTransformer2DModel::visit(const nn::ParameterVisitor& visitor) {
  visit_shared(visitor);
  for (size_t i = 0; i < transformer_blocks_.size(); ++i) {
    transformer_blocks_[i].visit("transformer_blocks." + std::to_string(i) + ".", visitor);
  }
}

void QwenImageTransformer2DModel::visit_shared(const nn::ParameterVisitor& visitor) {
  timestep_embedder_linear_1_.visit("time_text_embed.timestep_embedder.linear_1", visitor);
  timestep_embedder_linear_2_.visit("time_text_embed.timestep_embedder.linear_2", visitor);
  txt_norm_.visit("txt_norm", visitor);
  img_in_.visit("img_in", visitor);
  txt_in_.visit("txt_in", visitor);
  norm_out_linear_.visit("norm_out.linear", visitor);
  proj_out_.visit("proj_out", visitor);
}

void QwenImageTransformer2DModel::visit_linears(const nn::LinearVisitor& visitor) {
  visitor("time_text_embed.timestep_embedder.linear_1", timestep_embedder_linear_1_);
  visitor("time_text_embed.timestep_embedder.linear_2", timestep_embedder_linear_2_);
  visitor("img_in", img_in_);
  visitor("txt_in", txt_in_);
  for (size_t i = 0; i < transformer_blocks_.size(); ++i)
    transformer_blocks_[i].visit_linears("transformer_blocks." + std::to_string(i) + ".", visitor);
  visitor("norm_out.linear", norm_out_linear_);
  visitor("proj_out", proj_out_);
}

void QwenImageTransformer2DModel::quantize_block_weights(WeightFormat format) {
  for (QwenImageTransformerBlock& block : transformer_blocks_) block.quantize_weights(format);
}

}  // namespace canvas
