#include "models/qwen2_5_vl_vision.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "io/json_config.h"

namespace canvas {

namespace {

const std::string kPrefix = "model.visual.";
// The reference fixes the eps of every vision RMSNorm rather than reading it from the config.
constexpr float kNormEps = 1e-6f;

}  // namespace

Qwen2_5_VLVisionConfig Qwen2_5_VLVisionConfig::from_json(const nlohmann::json& root,
                                                         const std::string& file) {
  check(root.contains("vision_config") && root["vision_config"].is_object(),
        file + ": no vision_config; this is not a Qwen2.5-VL config");
  const nlohmann::json& vision = root["vision_config"];
  Qwen2_5_VLVisionConfig config;
  config.depth = config_int_at_least(vision, "depth", 0, file);
  config.hidden_size = config_int_at_least(vision, "hidden_size", 1, file);
  config.num_heads = config_int_at_least(vision, "num_heads", 1, file);
  config.intermediate_size = config_int_at_least(vision, "intermediate_size", 1, file);
  config.out_hidden_size = config_int_at_least(vision, "out_hidden_size", 1, file);
  config.in_channels = config_int_at_least_or(vision, "in_channels", 1,
                                              config_int_at_least_or(vision, "in_chans", 1, 3, file), file);
  config.patch_size = config_int_at_least_or(vision, "patch_size", 1, config.patch_size, file);
  config.temporal_patch_size =
      config_int_at_least_or(vision, "temporal_patch_size", 1, config.temporal_patch_size, file);
  config.spatial_merge_size =
      config_int_at_least_or(vision, "spatial_merge_size", 1, config.spatial_merge_size, file);
  config.window_size = config_int_at_least_or(vision, "window_size", 1, config.window_size, file);
  config.fullatt_block_indexes = config_int_list_or(vision, "fullatt_block_indexes", {}, file);
  // The blocks' MLP applies the config's activation; every Qwen2.5-VL checkpoint uses SiLU.
  const std::string activation = config_string_or(vision, "hidden_act", "silu", file);
  check(activation == "silu",
        file + ": vision hidden_act \"" + activation + "\" is not supported, only silu");
  if (vision.contains("rope_parameters") && vision["rope_parameters"].is_object()) {
    config.rope_theta = config_float_or(vision["rope_parameters"], "rope_theta", config.rope_theta, file);
  }
  check(config.hidden_size % config.num_heads == 0 && config.head_dim() % 4 == 0,
        file + ": vision hidden_size " + std::to_string(config.hidden_size) + " over num_heads " +
            std::to_string(config.num_heads) + " must give a head_dim divisible by 4 (2D rotary)");
  const int64_t window_units = config.window_size / config.spatial_merge_size / config.patch_size;
  check(window_units >= 1, file + ": vision window_size " + std::to_string(config.window_size) +
                               " is smaller than one merged patch");
  return config;
}

Qwen2_5_VLVisionConfig Qwen2_5_VLVisionConfig::from_file(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

Tensor Qwen2_5_VLVisionAttention::forward(const Tensor& hidden_states, const std::vector<int64_t>& cu_seqlens,
                                          const Tensor& cos, const Tensor& sin) const {
  const int64_t length = hidden_states.dim(0);
  Tensor qkv_states = qkv(hidden_states).view({1, length, 3, num_heads, head_dim});
  Tensor query = ops::rope(qkv_states.select(2, 0), cos, sin, ops::RopeLayout::HalfSplit).transpose(1, 2);
  Tensor key = ops::rope(qkv_states.select(2, 1), cos, sin, ops::RopeLayout::HalfSplit).transpose(1, 2);
  Tensor value = qkv_states.select(2, 2).transpose(1, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Segments never attend to each other, so each is an attention of its own (what transformers does for
  // every implementation but flash attention's varlen kernel).
  std::vector<Tensor> segments;
  for (size_t i = 0; i + 1 < cu_seqlens.size(); ++i) {
    const int64_t start = cu_seqlens[i], end = cu_seqlens[i + 1];
    Tensor attended = ops::attention(query.slice(2, start, end), key.slice(2, start, end),
                                     value.slice(2, start, end), {}, scale);
    segments.push_back(attended.transpose(1, 2).reshape({end - start, num_heads * head_dim}));
  }
  return proj(segments.size() == 1 ? segments[0] : ops::concat(segments, 0));
}

Tensor Qwen2_5_VLMLP::forward(const Tensor& x) const {
  return down_proj(ops::mul(ops::silu(gate_proj(x)), up_proj(x)));
}

Tensor Qwen2_5_VLVisionBlock::forward(const Tensor& hidden_states, const std::vector<int64_t>& cu_seqlens,
                                      const Tensor& cos, const Tensor& sin) const {
  Tensor residual = ops::add(hidden_states, attn.forward(norm1(hidden_states), cu_seqlens, cos, sin));
  return ops::add(residual, mlp.forward(norm2(residual)));
}

void Qwen2_5_VLVisionBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  norm1.visit(prefix + "norm1", visitor);
  norm2.visit(prefix + "norm2", visitor);
  attn.qkv.visit(prefix + "attn.qkv", visitor);
  attn.proj.visit(prefix + "attn.proj", visitor);
  mlp.gate_proj.visit(prefix + "mlp.gate_proj", visitor);
  mlp.up_proj.visit(prefix + "mlp.up_proj", visitor);
  mlp.down_proj.visit(prefix + "mlp.down_proj", visitor);
}

Tensor Qwen2_5_VLPatchMerger::forward(const Tensor& x) const {
  Tensor normed = ln_q(x);
  const int64_t merged_width = mlp_0.weight.dim(1);
  return mlp_2(ops::gelu_erf(mlp_0(normed.view({-1, merged_width}))));
}

void Qwen2_5_VLPatchMerger::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  ln_q.visit(prefix + "ln_q", visitor);
  mlp_0.visit(prefix + "mlp.0", visitor);
  mlp_2.visit(prefix + "mlp.2", visitor);
}

VisionWindows get_window_index(const std::vector<std::array<int64_t, 3>>& grid_thw,
                               const Qwen2_5_VLVisionConfig& config) {
  const int64_t merge = config.spatial_merge_size;
  const int64_t window = config.window_size / merge / config.patch_size;  // in merged tokens a side
  VisionWindows windows;
  windows.cu_window_seqlens.push_back(0);
  int64_t image_offset = 0;
  for (const auto& [grid_t, grid_h, grid_w] : grid_thw) {
    const int64_t merged_h = grid_h / merge, merged_w = grid_w / merge;
    // transformers pads the merged grid up to whole windows (a full extra one when it already fits, which
    // stays empty) and walks the windows row by row; the tokens a window holds keep their row-major order.
    const int64_t windows_h = merged_h / window + 1, windows_w = merged_w / window + 1;
    for (int64_t t = 0; t < grid_t; ++t) {
      for (int64_t window_y = 0; window_y < windows_h; ++window_y) {
        for (int64_t window_x = 0; window_x < windows_w; ++window_x) {
          int64_t tokens = 0;
          for (int64_t y = window_y * window; y < std::min((window_y + 1) * window, merged_h); ++y) {
            for (int64_t x = window_x * window; x < std::min((window_x + 1) * window, merged_w); ++x) {
              windows.window_index.push_back(image_offset + (t * merged_h + y) * merged_w + x);
              ++tokens;
            }
          }
          // unique_consecutive in the reference drops the boundaries of empty windows.
          if (tokens > 0) {
            windows.cu_window_seqlens.push_back(windows.cu_window_seqlens.back() + tokens * merge * merge);
          }
        }
      }
    }
    image_offset += grid_t * merged_h * merged_w;
  }
  return windows;
}

Qwen2_5_VisionTransformerPretrainedModel::Qwen2_5_VisionTransformerPretrainedModel(
    const Qwen2_5_VLVisionConfig& config, const WeightSource& weights)
    : config_(config) {
  const int64_t hidden = config.hidden_size, patch = config.patch_size;
  const int64_t merged_width = hidden * config.spatial_merge_size * config.spatial_merge_size;
  // The Conv3d's kernel equals its stride, so it is a linear map of each flattened patch.
  patch_embed_weight_ = weights
                            .get(kPrefix + "patch_embed.proj.weight",
                                 {hidden, config.in_channels, config.temporal_patch_size, patch, patch})
                            .view({hidden, config.in_channels * config.temporal_patch_size * patch * patch});
  for (int64_t i = 0; i < config.depth; ++i) {
    const std::string prefix = kPrefix + "blocks." + std::to_string(i) + ".";
    Qwen2_5_VLVisionBlock block;
    block.norm1 = nn::RMSNorm::load(weights, prefix + "norm1", hidden, kNormEps);
    block.norm2 = nn::RMSNorm::load(weights, prefix + "norm2", hidden, kNormEps);
    block.attn.qkv = nn::Linear::load(weights, prefix + "attn.qkv", hidden, 3 * hidden);
    block.attn.proj = nn::Linear::load(weights, prefix + "attn.proj", hidden, hidden);
    block.attn.num_heads = config.num_heads;
    block.attn.head_dim = config.head_dim();
    block.mlp.gate_proj =
        nn::Linear::load(weights, prefix + "mlp.gate_proj", hidden, config.intermediate_size);
    block.mlp.up_proj = nn::Linear::load(weights, prefix + "mlp.up_proj", hidden, config.intermediate_size);
    block.mlp.down_proj =
        nn::Linear::load(weights, prefix + "mlp.down_proj", config.intermediate_size, hidden);
    blocks_.push_back(std::move(block));
  }
  merger_.ln_q = nn::RMSNorm::load(weights, kPrefix + "merger.ln_q", hidden, kNormEps);
  merger_.mlp_0 = nn::Linear::load(weights, kPrefix + "merger.mlp.0", merged_width, merged_width);
  merger_.mlp_2 = nn::Linear::load(weights, kPrefix + "merger.mlp.2", merged_width, config.out_hidden_size);
}

std::pair<Tensor, Tensor> Qwen2_5_VisionTransformerPretrainedModel::rotary_tables(
    const std::vector<std::array<int64_t, 3>>& grid_thw, const std::vector<int64_t>& window_index,
    Device device, DType dtype) const {
  const int64_t merge = config_.spatial_merge_size, unit = merge * merge;
  // (row, column) of every patch in the processor's order: merge block by merge block.
  std::vector<std::array<int64_t, 2>> positions;
  for (const auto& [grid_t, grid_h, grid_w] : grid_thw) {
    for (int64_t t = 0; t < grid_t; ++t) {
      for (int64_t block_y = 0; block_y < grid_h / merge; ++block_y) {
        for (int64_t block_x = 0; block_x < grid_w / merge; ++block_x) {
          for (int64_t y = 0; y < merge; ++y) {
            for (int64_t x = 0; x < merge; ++x)
              positions.push_back({block_y * merge + y, block_x * merge + x});
          }
        }
      }
    }
  }
  // Axial rotary: the first quarter of the head's pairs turn with the row, the second with the column, at
  // the same head_dim / 4 frequencies (computed in f32 as the reference's inv_freq).
  const int64_t frequencies = config_.head_dim() / 4, pairs = 2 * frequencies;
  const float spatial_dim = static_cast<float>(config_.head_dim() / 2);
  std::vector<float> inverse_frequency(frequencies);
  for (int64_t k = 0; k < frequencies; ++k) {
    inverse_frequency[k] =
        1.0f / std::pow(static_cast<float>(config_.rope_theta), static_cast<float>(2 * k) / spatial_dim);
  }
  const int64_t length = static_cast<int64_t>(positions.size());
  std::vector<float> cos_values(length * pairs), sin_values(length * pairs);
  int64_t row = 0;
  for (int64_t merged : window_index) {
    for (int64_t patch = merged * unit; patch < (merged + 1) * unit; ++patch, ++row) {
      for (int64_t axis = 0; axis < 2; ++axis) {
        for (int64_t k = 0; k < frequencies; ++k) {
          const float angle = static_cast<float>(positions[patch][axis]) * inverse_frequency[k];
          cos_values[row * pairs + axis * frequencies + k] = std::cos(angle);
          sin_values[row * pairs + axis * frequencies + k] = std::sin(angle);
        }
      }
    }
  }
  Tensor cos = Tensor::from_floats(cos_values, {length, pairs}).to(dtype).to(device);
  Tensor sin = Tensor::from_floats(sin_values, {length, pairs}).to(dtype).to(device);
  return {cos, sin};
}

Tensor Qwen2_5_VisionTransformerPretrainedModel::forward(const Tensor& pixel_values,
                                                         const std::vector<std::array<int64_t, 3>>& grid_thw,
                                                         DType activation_dtype, nn::BlockGate* gate) const {
  const int64_t merge = config_.spatial_merge_size, unit = merge * merge;
  int64_t length = 0;
  std::vector<int64_t> cu_seqlens{0};
  for (const auto& [grid_t, grid_h, grid_w] : grid_thw) {
    check(grid_t >= 1 && grid_h % merge == 0 && grid_w % merge == 0 && grid_h > 0 && grid_w > 0,
          "vision grid (" + std::to_string(grid_t) + ", " + std::to_string(grid_h) + ", " +
              std::to_string(grid_w) + ") is not a whole number of " + std::to_string(merge) + "x" +
              std::to_string(merge) + " merge blocks");
    // Full-attention blocks attend within each frame of each image.
    for (int64_t t = 0; t < grid_t; ++t) cu_seqlens.push_back(cu_seqlens.back() + grid_h * grid_w);
    length += grid_t * grid_h * grid_w;
  }
  check(pixel_values.ndim() == 2 && pixel_values.dim(0) == length &&
            pixel_values.dim(1) == patch_embed_weight_.dim(1),
        "vision pixel_values " + shape_str(pixel_values.shape()) + " do not match the grids: want [" +
            std::to_string(length) + ", " + std::to_string(patch_embed_weight_.dim(1)) + "]");
  const VisionWindows windows = get_window_index(grid_thw, config_);
  const Device device = patch_embed_weight_.device();

  Tensor hidden_states = ops::linear(pixel_values.to(device).to(activation_dtype), patch_embed_weight_);
  // Window order: whole merge groups move, so the rows of a group stay together.
  Tensor order = Tensor::from_ints(windows.window_index, {length / unit}).to(device);
  hidden_states =
      ops::embedding(order, hidden_states.view({length / unit, unit * config_.hidden_size}), activation_dtype)
          .view({length, config_.hidden_size});
  auto [cos, sin] = rotary_tables(grid_thw, windows.window_index, device, activation_dtype);

  for (size_t i = 0; i < blocks_.size(); ++i) {
    const bool full = std::find(config_.fullatt_block_indexes.begin(), config_.fullatt_block_indexes.end(),
                                static_cast<int64_t>(i)) != config_.fullatt_block_indexes.end();
    if (gate) gate->before_block(static_cast<int>(i));
    hidden_states =
        blocks_[i].forward(hidden_states, full ? cu_seqlens : windows.cu_window_seqlens, cos, sin);
    if (gate) gate->after_block(static_cast<int>(i));
  }

  Tensor merged = merger_.forward(hidden_states);
  // Back to the processor's order: row window_index[j] of the result is row j of the merger's output.
  std::vector<int64_t> reverse(windows.window_index.size());
  for (size_t j = 0; j < reverse.size(); ++j) reverse[windows.window_index[j]] = static_cast<int64_t>(j);
  Tensor reverse_order = Tensor::from_ints(reverse, {length / unit}).to(device);
  return ops::embedding(reverse_order, merged, activation_dtype);
}

std::vector<std::pair<std::string, Shape>> Qwen2_5_VisionTransformerPretrainedModel::parameter_shapes(
    const Qwen2_5_VLVisionConfig& config) {
  const int64_t hidden = config.hidden_size, intermediate = config.intermediate_size;
  const int64_t merged_width = hidden * config.spatial_merge_size * config.spatial_merge_size;
  std::vector<std::pair<std::string, Shape>> shapes;
  auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    shapes.push_back({name + ".weight", {out, in}});
    shapes.push_back({name + ".bias", {out}});
  };
  shapes.push_back(
      {kPrefix + "patch_embed.proj.weight",
       {hidden, config.in_channels, config.temporal_patch_size, config.patch_size, config.patch_size}});
  for (int64_t i = 0; i < config.depth; ++i) {
    const std::string prefix = kPrefix + "blocks." + std::to_string(i) + ".";
    shapes.push_back({prefix + "norm1.weight", {hidden}});
    shapes.push_back({prefix + "norm2.weight", {hidden}});
    linear(prefix + "attn.qkv", hidden, 3 * hidden);
    linear(prefix + "attn.proj", hidden, hidden);
    linear(prefix + "mlp.gate_proj", hidden, intermediate);
    linear(prefix + "mlp.up_proj", hidden, intermediate);
    linear(prefix + "mlp.down_proj", intermediate, hidden);
  }
  shapes.push_back({kPrefix + "merger.ln_q.weight", {hidden}});
  linear(kPrefix + "merger.mlp.0", merged_width, merged_width);
  linear(kPrefix + "merger.mlp.2", merged_width, config.out_hidden_size);
  return shapes;
}

void Qwen2_5_VisionTransformerPretrainedModel::visit(const nn::ParameterVisitor& visitor) {
  visit_shared(visitor);
  for (size_t i = 0; i < blocks_.size(); ++i)
    blocks_[i].visit(kPrefix + "blocks." + std::to_string(i) + ".", visitor);
}

void Qwen2_5_VisionTransformerPretrainedModel::visit_shared(const nn::ParameterVisitor& visitor) {
  visitor(kPrefix + "patch_embed.proj.weight", patch_embed_weight_);
  merger_.visit(kPrefix + "merger.", visitor);
}

}  // namespace canvas
