#include "models/autoencoder_kl_qwen_image.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "io/json_config.h"

namespace canvas {

namespace {

// DiagonalGaussianDistribution's bounds on the log-variance.
constexpr float kLogvarMin = -30.0f, kLogvarMax = 20.0f;

std::vector<float> f32_list(const nlohmann::json& json, const std::string& key, const std::string& file) {
  std::vector<double> values = config_float_list(json, key, file);
  return std::vector<float>(values.begin(), values.end());
}

std::string channels_str(int64_t channels) {
  return std::to_string(channels);
}

// A copy of the last `extent` rows (axis 2) or columns (axis 3) of a decoded tile, or fewer when the tile
// is smaller: all a later neighbour blends with. Copied so that the tile itself can be released.
Tensor trailing_edge(const Tensor& tile, int axis, int64_t extent) {
  if (extent == 0) return {};
  const int64_t size = tile.dim(axis);
  return tile.slice(axis, size - std::min(extent, size), size).contiguous();
}

// The reference's blend_v (axis 2) / blend_h (axis 3): over n = min(extent, both sizes) pixels, pixel k of
// `tile` becomes edge[-n + k] * (1 - k / n) + tile[k] * (k / n), where `edge` ends where the tile's
// neighbour ended. The weights are rounded to f32 once, as the reference's Python-float factors are.
Tensor blend_edge(const Tensor& edge, const Tensor& tile, int axis, int64_t extent) {
  if (extent == 0) return tile;
  const int64_t n = std::min({extent, edge.dim(axis), tile.dim(axis)});
  std::vector<float> fade_in(n), fade_out(n);
  for (int64_t k = 0; k < n; ++k) {
    const double weight = static_cast<double>(k) / static_cast<double>(n);
    fade_in[k] = static_cast<float>(weight);
    fade_out[k] = static_cast<float>(1.0 - weight);
  }
  Shape ramp_shape = {1, 1, 1, 1};
  ramp_shape[axis] = n;
  auto ramp = [&](const std::vector<float>& values) {
    return Tensor::from_floats(values, ramp_shape).to(tile.device());
  };
  const int64_t edge_size = edge.dim(axis);
  const Tensor blended = ops::add(ops::mul(edge.slice(axis, edge_size - n, edge_size), ramp(fade_out)),
                                  ops::mul(tile.slice(axis, 0, n), ramp(fade_in)));
  const Tensor parts[] = {blended, tile.slice(axis, n, tile.dim(axis))};
  return ops::concat(parts, axis);
}

// Where the tiles of a tiled encode or decode lie. Tiles of tile_* input elements start every stride_*
// elements. Each tile's output is blended with its already blended neighbours above and to the left over
// blend_* output elements, then contributes its first kept_* output elements at (row, column) * kept_*.
struct TileLayout {
  int64_t tile_height = 0, tile_width = 0;
  int64_t stride_height = 0, stride_width = 0;
  int64_t blend_height = 0, blend_width = 0;
  int64_t kept_height = 0, kept_width = 0;
};

// The reference's tiled_encode / tiled_decode loop. It keeps every tile and blends each with its
// neighbours; only their facing edges matter, so only those outlive a tile here: the bottom edge of each
// tile of the previous row, and the right edge of the previous tile of this row. The activation peak is
// that of one tile.
Tensor run_tiled(const Tensor& input, const TileLayout& layout, const Shape& output_shape,
                 const std::function<Tensor(const Tensor&)>& run_tile) {
  const int64_t height = input.dim(2), width = input.dim(3);
  Tensor output = Tensor::empty(output_shape, input.dtype(), input.device());
  std::vector<Tensor> bottom_edges((width + layout.stride_width - 1) / layout.stride_width);
  for (int64_t top = 0, row = 0; top < height; top += layout.stride_height, ++row) {
    Tensor right_edge;
    for (int64_t left = 0, column = 0; left < width; left += layout.stride_width, ++column) {
      Tensor tile = run_tile(input.slice(2, top, std::min(top + layout.tile_height, height))
                                 .slice(3, left, std::min(left + layout.tile_width, width))
                                 .contiguous());
      if (row > 0) tile = blend_edge(bottom_edges[column], tile, 2, layout.blend_height);
      if (column > 0) tile = blend_edge(right_edge, tile, 3, layout.blend_width);
      // The next tiles cover the rest of this one, blended; the reference crops what overhangs the output.
      const int64_t out_top = row * layout.kept_height, out_left = column * layout.kept_width;
      const int64_t kept_height = std::min({layout.kept_height, tile.dim(2), output_shape[2] - out_top});
      const int64_t kept_width = std::min({layout.kept_width, tile.dim(3), output_shape[3] - out_left});
      Tensor destination =
          output.slice(2, out_top, out_top + kept_height).slice(3, out_left, out_left + kept_width);
      ops::copy_into(tile.slice(2, 0, kept_height).slice(3, 0, kept_width), destination);
      bottom_edges[column] = trailing_edge(tile, 2, layout.blend_height);
      right_edge = trailing_edge(tile, 3, layout.blend_width);
    }
  }
  return output;
}

}  // namespace

AutoencoderKLQwenImageConfig AutoencoderKLQwenImageConfig::from_json(const nlohmann::json& json,
                                                                     const std::string& file) {
  AutoencoderKLQwenImageConfig config;
  config.base_dim = config_int_at_least(json, "base_dim", 1, file);
  config.z_dim = config_int_at_least(json, "z_dim", 1, file);
  config.dim_mult = config_int_list(json, "dim_mult", file);
  config.num_res_blocks = config_int_at_least(json, "num_res_blocks", 1, file);
  config.attn_scales = config_float_list_or(json, "attn_scales", {}, file);
  config.temperal_downsample = config_bool_list(json, "temperal_downsample", file);
  config.dropout = config_float_or(json, "dropout", 0.0, file);
  config.input_channels = config_int_at_least_or(json, "input_channels", 1, 3, file);
  config.latents_mean = f32_list(json, "latents_mean", file);
  config.latents_std = f32_list(json, "latents_std", file);

  check(!config.dim_mult.empty() &&
            std::all_of(config.dim_mult.begin(), config.dim_mult.end(), [](int64_t m) { return m > 0; }),
        file + ": dim_mult must be a non-empty list of positive multipliers");
  check(config.attn_scales.empty(),
        file +
            ": attn_scales must be empty (the reference decoder ignores it and its encoder cannot run "
            "with attention in the down blocks)");
  check(config.temperal_downsample.size() + 1 == config.dim_mult.size(),
        file + ": temperal_downsample needs one entry per downsampling stage (" +
            std::to_string(config.dim_mult.size() - 1) + "), got " +
            std::to_string(config.temperal_downsample.size()));
  check(
      config.latents_mean.size() == static_cast<size_t>(config.z_dim) &&
          config.latents_std.size() == static_cast<size_t>(config.z_dim),
      file + ": latents_mean and latents_std need z_dim (" + std::to_string(config.z_dim) + ") entries each");
  check(std::all_of(config.latents_std.begin(), config.latents_std.end(), [](float s) { return s > 0.0f; }),
        file + ": latents_std must be positive");
  return config;
}

void VaeTiling::validate(int64_t ratio) const {
  const std::string whole = " must be a positive multiple of the VAE's spatial compression ratio (" +
                            std::to_string(ratio) + " pixels), got ";
  for (auto [name, pixels] : {std::pair{"tile_sample_min_height", tile_sample_min_height},
                              std::pair{"tile_sample_min_width", tile_sample_min_width},
                              std::pair{"tile_sample_stride_height", tile_sample_stride_height},
                              std::pair{"tile_sample_stride_width", tile_sample_stride_width}}) {
    check(pixels > 0 && pixels % ratio == 0,
          std::string("VAE tiling: ") + name + whole + std::to_string(pixels));
  }
  check(tile_sample_stride_height <= tile_sample_min_height,
        "VAE tiling: tile_sample_stride_height (" + std::to_string(tile_sample_stride_height) +
            ") exceeds tile_sample_min_height (" + std::to_string(tile_sample_min_height) +
            "): the tiles would leave gaps");
  check(tile_sample_stride_width <= tile_sample_min_width,
        "VAE tiling: tile_sample_stride_width (" + std::to_string(tile_sample_stride_width) +
            ") exceeds tile_sample_min_width (" + std::to_string(tile_sample_min_width) +
            "): the tiles would leave gaps");
}

AutoencoderKLQwenImageConfig AutoencoderKLQwenImageConfig::from_file(
    const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

QwenImageEncoder3d QwenImageEncoder3d::load(const WeightSource& weights, const std::string& prefix,
                                            const AutoencoderKLQwenImageConfig& config) {
  const std::vector<int64_t>& dim_mult = config.dim_mult;
  std::vector<int64_t> dims = {config.base_dim};
  for (int64_t multiplier : dim_mult) dims.push_back(config.base_dim * multiplier);

  QwenImageEncoder3d encoder;
  encoder.conv_in =
      QwenImageConv2d::load_causal3d(weights, prefix + ".conv_in", config.input_channels, dims[0], 3);
  for (size_t stage = 0; stage < dim_mult.size(); ++stage) {
    int64_t in_dim = dims[stage];
    const int64_t out_dim = dims[stage + 1];
    for (int64_t i = 0; i < config.num_res_blocks; ++i) {
      std::string name = prefix + ".down_blocks." + std::to_string(encoder.down_blocks.size());
      encoder.down_blocks.emplace_back(QwenImageResidualBlock::load(weights, name, in_dim, out_dim));
      in_dim = out_dim;
    }
    if (stage + 1 != dim_mult.size()) {
      std::string name = prefix + ".down_blocks." + std::to_string(encoder.down_blocks.size());
      encoder.down_blocks.emplace_back(
          QwenImageResample::load(weights, name, out_dim, QwenImageResample::Mode::Downsample));
    }
  }
  const int64_t out_dim = dims.back();
  encoder.mid_block = QwenImageMidBlock::load(weights, prefix + ".mid_block", out_dim);
  encoder.norm_out = QwenImageRMSNorm::load(weights, prefix + ".norm_out", out_dim, false);
  encoder.conv_out =
      QwenImageConv2d::load_causal3d(weights, prefix + ".conv_out", out_dim, 2 * config.z_dim, 3);
  return encoder;
}

Tensor QwenImageEncoder3d::forward(Tensor x) const {
  x = conv_in(x);
  for (const DownLayer& layer : down_blocks) {
    x = std::visit([&](const auto& block) { return block.forward(std::move(x)); }, layer);
  }
  x = mid_block.forward(std::move(x));
  x = norm_out(x);
  x = ops::silu(x);
  return conv_out(x);
}

void QwenImageEncoder3d::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  conv_in.visit(prefix + ".conv_in", visitor);
  for (size_t i = 0; i < down_blocks.size(); ++i) {
    std::visit([&](auto& block) { block.visit(prefix + ".down_blocks." + std::to_string(i), visitor); },
               down_blocks[i]);
  }
  mid_block.visit(prefix + ".mid_block", visitor);
  norm_out.visit(prefix + ".norm_out", visitor);
  conv_out.visit(prefix + ".conv_out", visitor);
}

QwenImageDecoder3d QwenImageDecoder3d::load(const WeightSource& weights, const std::string& prefix,
                                            const AutoencoderKLQwenImageConfig& config) {
  const std::vector<int64_t>& dim_mult = config.dim_mult;
  std::vector<int64_t> dims = {config.base_dim * dim_mult.back()};
  for (auto it = dim_mult.rbegin(); it != dim_mult.rend(); ++it) dims.push_back(config.base_dim * *it);

  QwenImageDecoder3d decoder;
  decoder.conv_in = QwenImageConv2d::load_causal3d(weights, prefix + ".conv_in", config.z_dim, dims[0], 3);
  decoder.mid_block = QwenImageMidBlock::load(weights, prefix + ".mid_block", dims[0]);
  for (size_t stage = 0; stage < dim_mult.size(); ++stage) {
    // Every stage after the first takes the previous upsampler's output, which halves the channels.
    const int64_t in_dim = stage == 0 ? dims[0] : dims[stage] / 2;
    const bool upsample = stage + 1 != dim_mult.size();
    decoder.up_blocks.push_back(QwenImageUpBlock::load(weights,
                                                       prefix + ".up_blocks." + std::to_string(stage), in_dim,
                                                       dims[stage + 1], config.num_res_blocks, upsample));
  }
  const int64_t out_dim = dims.back();
  decoder.norm_out = QwenImageRMSNorm::load(weights, prefix + ".norm_out", out_dim, false);
  decoder.conv_out =
      QwenImageConv2d::load_causal3d(weights, prefix + ".conv_out", out_dim, config.input_channels, 3);
  return decoder;
}

Tensor QwenImageDecoder3d::forward(Tensor x) const {
  x = conv_in(x);
  x = mid_block.forward(std::move(x));
  for (const QwenImageUpBlock& up_block : up_blocks) x = up_block.forward(std::move(x));
  x = norm_out(x);
  x = ops::silu(x);
  return conv_out(x);
}

void QwenImageDecoder3d::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  conv_in.visit(prefix + ".conv_in", visitor);
  mid_block.visit(prefix + ".mid_block", visitor);
  for (size_t i = 0; i < up_blocks.size(); ++i)
    up_blocks[i].visit(prefix + ".up_blocks." + std::to_string(i), visitor);
  norm_out.visit(prefix + ".norm_out", visitor);
  conv_out.visit(prefix + ".conv_out", visitor);
}

AutoencoderKLQwenImage::AutoencoderKLQwenImage(const AutoencoderKLQwenImageConfig& config,
                                               const WeightSource& weights)
    : config_(config),
      encoder_(QwenImageEncoder3d::load(weights, "encoder", config)),
      quant_conv_(
          QwenImageConv2d::load_causal3d(weights, "quant_conv", 2 * config.z_dim, 2 * config.z_dim, 1)),
      post_quant_conv_(
          QwenImageConv2d::load_causal3d(weights, "post_quant_conv", config.z_dim, config.z_dim, 1)),
      decoder_(QwenImageDecoder3d::load(weights, "decoder", config)) {}

void AutoencoderKLQwenImage::check_decode_input(const Tensor& latents) const {
  check(latents.ndim() != 5, "VAE decode takes one frame as [B, " + channels_str(config_.z_dim) +
                                 ", h, w], with the frame axis dropped; got " + shape_str(latents.shape()));
  check(latents.ndim() == 4 && latents.dim(1) == config_.z_dim,
        "VAE decode takes latents [B, " + channels_str(config_.z_dim) + ", h, w], got " +
            shape_str(latents.shape()));
  check(latents.numel() > 0, "VAE decode of empty latents " + shape_str(latents.shape()));
}

Tensor AutoencoderKLQwenImage::run_decoder(const Tensor& latents) const {
  Tensor x = post_quant_conv_(latents.to(post_quant_conv_.weight.device()));
  return decoder_.forward(std::move(x));
}

Tensor AutoencoderKLQwenImage::decode(const Tensor& latents) const {
  check_decode_input(latents);
  OwnerScope owner({"vae", -1, MemoryRole::Activations});
  return ops::clamp(run_decoder(latents), -1.0f, 1.0f);
}

Tensor AutoencoderKLQwenImage::tiled_decode(const Tensor& latents, const VaeTiling& tiling) const {
  check_decode_input(latents);
  const int64_t ratio = config_.spatial_compression_ratio();
  tiling.validate(ratio);
  const int64_t height = latents.dim(2), width = latents.dim(3);
  TileLayout layout;
  layout.tile_height = tiling.tile_sample_min_height / ratio;
  layout.tile_width = tiling.tile_sample_min_width / ratio;
  if (height <= layout.tile_height && width <= layout.tile_width) return decode(latents);
  layout.stride_height = tiling.tile_sample_stride_height / ratio;
  layout.stride_width = tiling.tile_sample_stride_width / ratio;
  // The reference blends decoded tiles over the overlap measured in latents but applied in pixels.
  layout.blend_height = tiling.tile_sample_min_height - tiling.tile_sample_stride_height;
  layout.blend_width = tiling.tile_sample_min_width - tiling.tile_sample_stride_width;
  layout.kept_height = tiling.tile_sample_stride_height;
  layout.kept_width = tiling.tile_sample_stride_width;

  OwnerScope owner({"vae", -1, MemoryRole::Activations});
  const Tensor input = latents.to(post_quant_conv_.weight.device());
  return run_tiled(input, layout, {input.dim(0), config_.input_channels, height * ratio, width * ratio},
                   [&](const Tensor& tile) { return run_decoder(tile); });
}

Tensor AutoencoderKLQwenImage::encode_moments(const Tensor& images,
                                              const std::optional<VaeTiling>& tiling) const {
  const int64_t channels = config_.input_channels;
  check(images.ndim() != 5, "VAE encode takes one frame as [B, " + channels_str(channels) +
                                ", H, W], with the frame axis dropped; got " + shape_str(images.shape()));
  check(
      images.ndim() == 4 && images.dim(1) == channels,
      "VAE encode takes images [B, " + channels_str(channels) + ", H, W], got " + shape_str(images.shape()));
  // Each stride-2 downsampler needs at least two rows and columns, so the input needs one pixel per
  // latent at the least.
  const int64_t ratio = config_.spatial_compression_ratio();
  check(images.dim(0) > 0 && images.dim(2) >= ratio && images.dim(3) >= ratio,
        "VAE encode needs images of at least " + std::to_string(ratio) + "x" + std::to_string(ratio) +
            " pixels, got " + shape_str(images.shape()));
  OwnerScope owner({"vae", -1, MemoryRole::Activations});
  const Tensor input = images.to(quant_conv_.weight.device());
  auto encode_whole = [&](const Tensor& x) { return quant_conv_(encoder_.forward(x)); };
  const int64_t height = input.dim(2), width = input.dim(3);
  if (!tiling || (height <= tiling->tile_sample_min_height && width <= tiling->tile_sample_min_width))
    return encode_whole(input);
  tiling->validate(ratio);
  // Every tile, the last ones included, then spans whole latents.
  check(height % ratio == 0 && width % ratio == 0,
        "tiled VAE encode needs a picture of whole latents (multiples of " + std::to_string(ratio) +
            " pixels), got " + shape_str(images.shape()));
  TileLayout layout;
  layout.tile_height = tiling->tile_sample_min_height;
  layout.tile_width = tiling->tile_sample_min_width;
  layout.stride_height = tiling->tile_sample_stride_height;
  layout.stride_width = tiling->tile_sample_stride_width;
  layout.kept_height = tiling->tile_sample_stride_height / ratio;
  layout.kept_width = tiling->tile_sample_stride_width / ratio;
  layout.blend_height = layout.tile_height / ratio - layout.kept_height;
  layout.blend_width = layout.tile_width / ratio - layout.kept_width;
  return run_tiled(input, layout, {input.dim(0), 2 * config_.z_dim, height / ratio, width / ratio},
                   encode_whole);
}

QwenImageLatentDistribution AutoencoderKLQwenImage::encode(const Tensor& images,
                                                           const std::optional<VaeTiling>& tiling) const {
  Tensor moments = encode_moments(images, tiling);
  OwnerScope owner({"vae", -1, MemoryRole::Activations});
  const int64_t z = config_.z_dim;
  return {moments.slice(1, 0, z).contiguous(),
          ops::clamp(moments.slice(1, z, 2 * z), kLogvarMin, kLogvarMax)};
}

Tensor AutoencoderKLQwenImage::encode_mean(const Tensor& images,
                                           const std::optional<VaeTiling>& tiling) const {
  Tensor moments = encode_moments(images, tiling);
  OwnerScope owner({"vae", -1, MemoryRole::Activations});
  return moments.slice(1, 0, config_.z_dim).contiguous();
}

Tensor AutoencoderKLQwenImage::latent_statistic(const std::vector<float>& values, const Tensor& like) const {
  check(like.ndim() == 4 && like.dim(1) == config_.z_dim, "VAE latent scaling takes [B, " +
                                                              channels_str(config_.z_dim) + ", h, w], got " +
                                                              shape_str(like.shape()));
  return Tensor::from_floats(values, {1, config_.z_dim, 1, 1}).to(like.dtype()).to(like.device());
}

Tensor AutoencoderKLQwenImage::latent_inverse_std(const Tensor& like) const {
  // The reference forms 1 / std in the latents' dtype.
  Tensor ones = latent_statistic(std::vector<float>(config_.latents_std.size(), 1.0f), like);
  return ops::div(ones, latent_statistic(config_.latents_std, like));
}

Tensor AutoencoderKLQwenImage::denormalize_latents(const Tensor& latents) const {
  return ops::add(ops::div(latents, latent_inverse_std(latents)),
                  latent_statistic(config_.latents_mean, latents));
}

Tensor AutoencoderKLQwenImage::normalize_latents(const Tensor& latents) const {
  return ops::div(ops::sub(latents, latent_statistic(config_.latents_mean, latents)),
                  latent_statistic(config_.latents_std, latents));
}

Tensor AutoencoderKLQwenImage::normalize_latents_by_inverse_std(const Tensor& latents) const {
  return ops::mul(ops::sub(latents, latent_statistic(config_.latents_mean, latents)),
                  latent_inverse_std(latents));
}

std::vector<std::pair<std::string, Shape>> AutoencoderKLQwenImage::parameter_shapes(
    const AutoencoderKLQwenImageConfig& config) {
  std::vector<std::pair<std::string, Shape>> shapes;
  auto conv = [&](const std::string& name, int64_t in, int64_t out, Shape kernel) {
    Shape weight = {out, in};
    weight.insert(weight.end(), kernel.begin(), kernel.end());
    shapes.push_back({name + ".weight", weight});
    shapes.push_back({name + ".bias", {out}});
  };
  auto causal_conv = [&](const std::string& name, int64_t in, int64_t out, int64_t kernel) {
    conv(name, in, out, {kernel, kernel, kernel});
  };
  auto residual = [&](const std::string& prefix, int64_t in_dim, int64_t out_dim) {
    shapes.push_back({prefix + ".norm1.gamma", {in_dim, 1, 1, 1}});
    causal_conv(prefix + ".conv1", in_dim, out_dim, 3);
    shapes.push_back({prefix + ".norm2.gamma", {out_dim, 1, 1, 1}});
    causal_conv(prefix + ".conv2", out_dim, out_dim, 3);
    if (in_dim != out_dim) causal_conv(prefix + ".conv_shortcut", in_dim, out_dim, 1);
  };
  auto mid_block = [&](const std::string& prefix, int64_t dim) {
    residual(prefix + ".resnets.0", dim, dim);
    shapes.push_back({prefix + ".attentions.0.norm.gamma", {dim, 1, 1}});
    conv(prefix + ".attentions.0.to_qkv", dim, 3 * dim, {1, 1});
    conv(prefix + ".attentions.0.proj", dim, dim, {1, 1});
    residual(prefix + ".resnets.1", dim, dim);
  };
  const std::vector<int64_t>& dim_mult = config.dim_mult;
  const size_t stages = dim_mult.size();

  std::vector<int64_t> dims = {config.base_dim};
  for (int64_t multiplier : dim_mult) dims.push_back(config.base_dim * multiplier);
  causal_conv("encoder.conv_in", config.input_channels, dims[0], 3);
  int64_t layer = 0;
  for (size_t stage = 0; stage < stages; ++stage) {
    for (int64_t i = 0; i < config.num_res_blocks; ++i, ++layer) {
      residual("encoder.down_blocks." + std::to_string(layer), i == 0 ? dims[stage] : dims[stage + 1],
               dims[stage + 1]);
    }
    if (stage + 1 == stages) continue;
    const std::string prefix = "encoder.down_blocks." + std::to_string(layer++);
    const int64_t dim = dims[stage + 1];
    conv(prefix + ".resample.1", dim, dim, {3, 3});
    if (config.temperal_downsample[stage]) conv(prefix + ".time_conv", dim, dim, {3, 1, 1});
  }
  mid_block("encoder.mid_block", dims.back());
  shapes.push_back({"encoder.norm_out.gamma", {dims.back(), 1, 1, 1}});
  causal_conv("encoder.conv_out", dims.back(), 2 * config.z_dim, 3);

  causal_conv("quant_conv", 2 * config.z_dim, 2 * config.z_dim, 1);
  causal_conv("post_quant_conv", config.z_dim, config.z_dim, 1);

  std::vector<int64_t> up_dims = {config.base_dim * dim_mult.back()};
  for (auto it = dim_mult.rbegin(); it != dim_mult.rend(); ++it) up_dims.push_back(config.base_dim * *it);
  causal_conv("decoder.conv_in", config.z_dim, up_dims[0], 3);
  mid_block("decoder.mid_block", up_dims[0]);
  for (size_t stage = 0; stage < stages; ++stage) {
    const std::string prefix = "decoder.up_blocks." + std::to_string(stage);
    const int64_t in_dim = stage == 0 ? up_dims[0] : up_dims[stage] / 2, out_dim = up_dims[stage + 1];
    for (int64_t i = 0; i <= config.num_res_blocks; ++i) {
      residual(prefix + ".resnets." + std::to_string(i), i == 0 ? in_dim : out_dim, out_dim);
    }
    if (stage + 1 == stages) continue;
    conv(prefix + ".upsamplers.0.resample.1", out_dim, out_dim / 2, {3, 3});
    // The decoder upsamples in time where the encoder downsampled, in reverse stage order; its time_conv
    // doubles the channels to hold two frames.
    if (config.temperal_downsample[stages - 2 - stage]) {
      conv(prefix + ".upsamplers.0.time_conv", out_dim, 2 * out_dim, {3, 1, 1});
    }
  }
  shapes.push_back({"decoder.norm_out.gamma", {up_dims.back(), 1, 1, 1}});
  causal_conv("decoder.conv_out", up_dims.back(), config.input_channels, 3);
  return shapes;
}

void AutoencoderKLQwenImage::visit(const nn::ParameterVisitor& visitor) {
  encoder_.visit("encoder", visitor);
  quant_conv_.visit("quant_conv", visitor);
  post_quant_conv_.visit("post_quant_conv", visitor);
  decoder_.visit("decoder", visitor);
}

}  // namespace canvas
