#include "models/qwen2_5_vl_text.h"

#include <cmath>
#include <numeric>

#include "io/json_config.h"

namespace canvas {

namespace {

const std::string kPrefix = "model.language_model.";

}  // namespace

Qwen2_5_VLTextConfig Qwen2_5_VLTextConfig::from_json(const nlohmann::json& root, const std::string& file) {
  const nlohmann::json& text =
      root.contains("text_config") && root["text_config"].is_object() ? root["text_config"] : root;
  Qwen2_5_VLTextConfig config;
  config.vocab_size = config_int_at_least(text, "vocab_size", 1, file);
  config.hidden_size = config_int_at_least(text, "hidden_size", 1, file);
  config.intermediate_size = config_int_at_least(text, "intermediate_size", 1, file);
  config.num_hidden_layers = config_int_at_least(text, "num_hidden_layers", 0, file);
  config.num_attention_heads = config_int_at_least(text, "num_attention_heads", 1, file);
  config.num_key_value_heads =
      config_int_at_least_or(text, "num_key_value_heads", 1, config.num_attention_heads, file);
  config.rms_norm_eps = static_cast<float>(config_float_or(text, "rms_norm_eps", 1e-6, file));
  check(config.hidden_size % config.num_attention_heads == 0,
        file + ": hidden_size " + std::to_string(config.hidden_size) +
            " is not divisible by num_attention_heads " + std::to_string(config.num_attention_heads));
  check(config.num_attention_heads % config.num_key_value_heads == 0,
        file + ": num_attention_heads is not a multiple of num_key_value_heads");
  // Qwen2.5-VL's attention always splits hidden_size evenly across heads, whatever head_dim says.
  config.head_dim = config.hidden_size / config.num_attention_heads;

  // transformers >= 5 keeps rope settings in `rope_parameters`; older files use `rope_scaling` +
  // `rope_theta`.
  const nlohmann::json* rope = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (text.contains(key) && text[key].is_object()) {
      rope = &text[key];
      break;
    }
  }
  if (rope && rope->contains("rope_theta")) {
    config.rope_theta = config_float(*rope, "rope_theta", file);
  } else {
    config.rope_theta = config_float_or(text, "rope_theta", 1e6, file);
  }
  check(rope != nullptr && rope->contains("mrope_section"),
        file + ": no mrope_section in rope_parameters or rope_scaling; this is not a Qwen2.5-VL config");
  config.mrope_section = config_int_list(*rope, "mrope_section", file);
  int64_t pairs = std::accumulate(config.mrope_section.begin(), config.mrope_section.end(), int64_t{0});
  check(config.mrope_section.size() == 3 && pairs == config.head_dim / 2,
        file + ": mrope_section must have three parts summing to head_dim / 2 = " +
            std::to_string(config.head_dim / 2));
  return config;
}

Qwen2_5_VLTextConfig Qwen2_5_VLTextConfig::from_file(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

Tensor Qwen2_5_VLAttention::forward(const Tensor& hidden_states, const Tensor& cos, const Tensor& sin,
                                    const ops::AttentionMask& mask) const {
  int64_t batch = hidden_states.dim(0), length = hidden_states.dim(1);
  Tensor query = q_proj(hidden_states).view({batch, length, num_heads, head_dim});
  Tensor key = k_proj(hidden_states).view({batch, length, num_key_value_heads, head_dim});
  Tensor value = v_proj(hidden_states).view({batch, length, num_key_value_heads, head_dim});
  query = ops::rope(query, cos, sin, ops::RopeLayout::HalfSplit);
  key = ops::rope(key, cos, sin, ops::RopeLayout::HalfSplit);
  Tensor attended = ops::attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), mask,
                                   1.0f / std::sqrt(static_cast<float>(head_dim)));
  return o_proj(attended.transpose(1, 2).reshape({batch, length, num_heads * head_dim}));
}

Tensor Qwen2MLP::forward(const Tensor& x) const {
  return down_proj(ops::mul(ops::silu(gate_proj(x)), up_proj(x)));
}

Tensor Qwen2_5_VLDecoderLayer::forward(const Tensor& hidden_states, const Tensor& cos, const Tensor& sin,
                                       const ops::AttentionMask& mask) const {
  Tensor attended = self_attn.forward(input_layernorm(hidden_states), cos, sin, mask);
  Tensor residual = ops::add(hidden_states, attended);
  return ops::add(residual, mlp.forward(post_attention_layernorm(residual)));
}

void Qwen2_5_VLDecoderLayer::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  self_attn.q_proj.visit(prefix + "self_attn.q_proj", visitor);
  self_attn.k_proj.visit(prefix + "self_attn.k_proj", visitor);
  self_attn.v_proj.visit(prefix + "self_attn.v_proj", visitor);
  self_attn.o_proj.visit(prefix + "self_attn.o_proj", visitor);
  mlp.gate_proj.visit(prefix + "mlp.gate_proj", visitor);
  mlp.up_proj.visit(prefix + "mlp.up_proj", visitor);
  mlp.down_proj.visit(prefix + "mlp.down_proj", visitor);
  input_layernorm.visit(prefix + "input_layernorm", visitor);
  post_attention_layernorm.visit(prefix + "post_attention_layernorm", visitor);
}

Qwen2_5_VLTextModel::Qwen2_5_VLTextModel(const Qwen2_5_VLTextConfig& config, const WeightSource& weights)
    : config_(config) {
  int64_t hidden = config.hidden_size, heads = config.num_attention_heads;
  int64_t kv_heads = config.num_key_value_heads, head_dim = config.head_dim;
  embed_tokens_ = nn::Embedding::load(weights, kPrefix + "embed_tokens", config.vocab_size, hidden);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    std::string prefix = kPrefix + "layers." + std::to_string(i) + ".";
    Qwen2_5_VLDecoderLayer layer;
    layer.self_attn.q_proj = nn::Linear::load(weights, prefix + "self_attn.q_proj", hidden, heads * head_dim);
    layer.self_attn.k_proj =
        nn::Linear::load(weights, prefix + "self_attn.k_proj", hidden, kv_heads * head_dim);
    layer.self_attn.v_proj =
        nn::Linear::load(weights, prefix + "self_attn.v_proj", hidden, kv_heads * head_dim);
    layer.self_attn.o_proj =
        nn::Linear::load(weights, prefix + "self_attn.o_proj", heads * head_dim, hidden, false);
    layer.self_attn.num_heads = heads;
    layer.self_attn.num_key_value_heads = kv_heads;
    layer.self_attn.head_dim = head_dim;
    layer.mlp.gate_proj =
        nn::Linear::load(weights, prefix + "mlp.gate_proj", hidden, config.intermediate_size, false);
    layer.mlp.up_proj =
        nn::Linear::load(weights, prefix + "mlp.up_proj", hidden, config.intermediate_size, false);
    layer.mlp.down_proj =
        nn::Linear::load(weights, prefix + "mlp.down_proj", config.intermediate_size, hidden, false);
    layer.input_layernorm =
        nn::RMSNorm::load(weights, prefix + "input_layernorm", hidden, config.rms_norm_eps);
    layer.post_attention_layernorm =
        nn::RMSNorm::load(weights, prefix + "post_attention_layernorm", hidden, config.rms_norm_eps);
    layers_.push_back(std::move(layer));
  }
  norm_ = nn::RMSNorm::load(weights, kPrefix + "norm", hidden, config.rms_norm_eps);
}

std::pair<Tensor, Tensor> Qwen2_5_VLTextModel::rotary_tables(std::span<const int64_t> positions,
                                                             int64_t batch, int64_t length,
                                                             DType dtype) const {
  const int64_t tokens = batch * length;
  const int64_t pairs = config_.head_dim / 2;
  // M-RoPE gives each section of rotary pairs the position row of its axis (temporal, height, width).
  std::vector<int64_t> row_of_pair(pairs);
  for (int64_t pair = 0, section = 0, end = config_.mrope_section[0]; pair < pairs; ++pair) {
    while (pair >= end) end += config_.mrope_section[++section];
    row_of_pair[pair] = section;
  }
  std::vector<float> cos_values(tokens * pairs), sin_values(tokens * pairs);
  for (int64_t pair = 0; pair < pairs; ++pair) {
    // Matches transformers: the inverse frequency is computed in f32, the angle in f32.
    float inverse_frequency =
        static_cast<float>(1.0 / std::pow(config_.rope_theta, static_cast<double>(2 * pair) /
                                                                  static_cast<double>(config_.head_dim)));
    const int64_t* row = positions.data() + row_of_pair[pair] * tokens;
    for (int64_t token = 0; token < tokens; ++token) {
      float angle = static_cast<float>(row[token]) * inverse_frequency;
      cos_values[token * pairs + pair] = std::cos(angle);
      sin_values[token * pairs + pair] = std::sin(angle);
    }
  }
  const Device device = embed_tokens_.weight.device();
  Tensor cos = Tensor::from_floats(cos_values, {batch, length, pairs}).to(dtype).to(device);
  Tensor sin = Tensor::from_floats(sin_values, {batch, length, pairs}).to(dtype).to(device);
  return {cos, sin};
}

Tensor Qwen2_5_VLTextModel::decode(const Tensor& inputs_embeds, const std::pair<Tensor, Tensor>& rotary,
                                   const Tensor& attention_mask, nn::BlockGate* gate) const {
  const Shape tokens = {inputs_embeds.dim(0), inputs_embeds.dim(1)};
  check(attention_mask.shape() == tokens, "text encoder attention_mask " + shape_str(attention_mask.shape()) +
                                              " does not match the tokens " + shape_str(tokens));
  const auto& [cos, sin] = rotary;
  ops::AttentionMask mask{attention_mask.to(embed_tokens_.weight.device()), /*causal=*/true};
  Tensor hidden_states = inputs_embeds;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (gate) gate->before_block(static_cast<int>(i));
    hidden_states = layers_[i].forward(hidden_states, cos, sin, mask);
    if (gate) gate->after_block(static_cast<int>(i));
  }
  return norm_(hidden_states);
}

Tensor Qwen2_5_VLTextModel::forward(const Tensor& input_ids, const Tensor& attention_mask,
                                    DType activation_dtype, nn::BlockGate* gate) const {
  check(input_ids.ndim() == 2,
        "text encoder input_ids must be [batch, length], got " + shape_str(input_ids.shape()));
  const int64_t batch = input_ids.dim(0), length = input_ids.dim(1);
  // Positions 0..L-1 on all three rows: forward_embeds' rotary for text.
  std::vector<int64_t> positions(static_cast<size_t>(3 * batch * length));
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = static_cast<int64_t>(i) % length;
  return decode(embed(input_ids, activation_dtype), rotary_tables(positions, batch, length, activation_dtype),
                attention_mask, gate);
}

Tensor Qwen2_5_VLTextModel::embed(const Tensor& input_ids, DType activation_dtype) const {
  return embed_tokens_(input_ids.to(embed_tokens_.weight.device()), activation_dtype);
}

Tensor Qwen2_5_VLTextModel::forward_embeds(const Tensor& inputs_embeds, const Tensor& position_ids,
                                           const Tensor& attention_mask, nn::BlockGate* gate) const {
  check(inputs_embeds.ndim() == 3 && inputs_embeds.dim(2) == config_.hidden_size,
        "text encoder inputs_embeds must be [batch, length, " + std::to_string(config_.hidden_size) +
            "], got " + shape_str(inputs_embeds.shape()));
  check(inputs_embeds.device() == embed_tokens_.weight.device(),
        "text encoder inputs_embeds are not on the model's device");
  const int64_t batch = inputs_embeds.dim(0), length = inputs_embeds.dim(1);
  check(position_ids.shape() == Shape{3, batch, length} &&
            (position_ids.dtype() == DType::I64 || position_ids.dtype() == DType::I32),
        "text encoder position_ids " + shape_str(position_ids.shape()) + " are not i32/i64 [3, " +
            std::to_string(batch) + ", " + std::to_string(length) + "]");
  const Tensor positions = position_ids.to(Device::cpu()).to(DType::I64).contiguous();
  return decode(inputs_embeds,
                rotary_tables({positions.data<int64_t>(), static_cast<size_t>(positions.numel())}, batch,
                              length, inputs_embeds.dtype()),
                attention_mask, gate);
}

std::vector<std::pair<std::string, Shape>> Qwen2_5_VLTextModel::parameter_shapes(
    const Qwen2_5_VLTextConfig& config) {
  const int64_t hidden = config.hidden_size, intermediate = config.intermediate_size;
  const int64_t query_dim = config.num_attention_heads * config.head_dim;
  const int64_t key_value_dim = config.num_key_value_heads * config.head_dim;
  std::vector<std::pair<std::string, Shape>> shapes;
  auto linear = [&](const std::string& name, int64_t in, int64_t out, bool bias) {
    shapes.push_back({name + ".weight", {out, in}});
    if (bias) shapes.push_back({name + ".bias", {out}});
  };
  shapes.push_back({kPrefix + "embed_tokens.weight", {config.vocab_size, hidden}});
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    std::string prefix = kPrefix + "layers." + std::to_string(i) + ".";
    linear(prefix + "self_attn.q_proj", hidden, query_dim, true);
    linear(prefix + "self_attn.k_proj", hidden, key_value_dim, true);
    linear(prefix + "self_attn.v_proj", hidden, key_value_dim, true);
    linear(prefix + "self_attn.o_proj", query_dim, hidden, false);
    linear(prefix + "mlp.gate_proj", hidden, intermediate, false);
    linear(prefix + "mlp.up_proj", hidden, intermediate, false);
    linear(prefix + "mlp.down_proj", intermediate, hidden, false);
    shapes.push_back({prefix + "input_layernorm.weight", {hidden}});
    shapes.push_back({prefix + "post_attention_layernorm.weight", {hidden}});
  }
  shapes.push_back({kPrefix + "norm.weight", {hidden}});
  return shapes;
}

void Qwen2_5_VLTextModel::visit(const nn::ParameterVisitor& visitor) {
  visit_shared(visitor);
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i].visit(kPrefix + "layers." + std::to_string(i) + ".", visitor);
}

void Qwen2_5_VLTextModel::visit_linears(const nn::LinearVisitor& visitor) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string prefix = kPrefix + "layers." + std::to_string(i) + ".";
    Qwen2_5_VLDecoderLayer& layer = layers_[i];
    visitor(prefix + "self_attn.q_proj", layer.self_attn.q_proj);
    visitor(prefix + "self_attn.k_proj", layer.self_attn.k_proj);
    visitor(prefix + "self_attn.v_proj", layer.self_attn.v_proj);
    visitor(prefix + "self_attn.o_proj", layer.self_attn.o_proj);
    visitor(prefix + "mlp.gate_proj", layer.mlp.gate_proj);
    visitor(prefix + "mlp.up_proj", layer.mlp.up_proj);
    visitor(prefix + "mlp.down_proj", layer.mlp.down_proj);
  }
}

void Qwen2_5_VLTextModel::visit_shared(const nn::ParameterVisitor& visitor) {
  embed_tokens_.visit(kPrefix + "embed_tokens", visitor);
  norm_.visit(kPrefix + "norm", visitor);
}

}  // namespace canvas
