// AutoencoderKLQwenImage (diffusers): the Wan-2.1-style causal 3D VAE of Qwen-Image, run on single
// images. Every tensor here is [B, C, H, W]: the reference's frame axis (always of extent 1 for an
// image) is dropped. See qwen_image_vae_blocks.h for why one frame reduces the causal 3D convs to 2D ones.
//
// The module tree and weight names mirror diffusers: encoder.conv_in, encoder.down_blocks.N (a flat list
// of residual blocks and downsamplers), encoder.mid_block, encoder.norm_out, encoder.conv_out,
// quant_conv, post_quant_conv, decoder.conv_in, decoder.mid_block, decoder.up_blocks.N.resnets.M,
// decoder.up_blocks.N.upsamplers.0, decoder.norm_out, decoder.conv_out. The temporal convs (time_conv)
// only act between frames and are not loaded.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "models/qwen_image_vae_blocks.h"

namespace canvas {

struct AutoencoderKLQwenImageConfig {
  int64_t base_dim = 0;
  int64_t z_dim = 0;
  std::vector<int64_t> dim_mult;
  int64_t num_res_blocks = 0;
  // Must be empty: the reference decoder ignores it and its encoder cannot run with attention there.
  std::vector<double> attn_scales;
  // One flag per downsampling stage (sic: "temperal", as in the reference). Irrelevant to single frames
  // but kept: its length fixes the spatial compression the pipeline assumes.
  std::vector<bool> temperal_downsample;
  double dropout = 0.0;  // training only
  int64_t input_channels = 3;
  // Per-channel statistics of the latent space, rounded to f32 as torch.tensor(list) does.
  std::vector<float> latents_mean;
  std::vector<float> latents_std;

  bool operator==(const AutoencoderKLQwenImageConfig&) const = default;
  // Pixels per latent along each axis: 2 ** len(temperal_downsample), as the reference reports it.
  int64_t spatial_compression_ratio() const { return int64_t{1} << temperal_downsample.size(); }
  static AutoencoderKLQwenImageConfig from_json(const nlohmann::json& config,
                                                const std::string& file_for_messages);
  static AutoencoderKLQwenImageConfig from_file(const std::filesystem::path& config_json);
};

// The diagonal Gaussian posterior of an encoded image, as DiagonalGaussianDistribution holds it.
struct QwenImageLatentDistribution {
  Tensor mean;    // [B, z_dim, h, w]
  Tensor logvar;  // [B, z_dim, h, w], clamped to [-30, 20]
};

// Tiled encoding and decoding as diffusers' AutoencoderKLQwenImage.enable_tiling sets it up, in pixels, with
// the reference's defaults. Tiles of tile_sample_min_* pixels start every tile_sample_stride_* pixels, so
// neighbours overlap by min - stride pixels, where they are blended linearly.
struct VaeTiling {
  int64_t tile_sample_min_height = 256;
  int64_t tile_sample_min_width = 256;
  int64_t tile_sample_stride_height = 192;
  int64_t tile_sample_stride_width = 192;

  // Throws canvas::Error naming the first bad parameter. Every size must be whole latents: the reference
  // floors tile sizes to latents but blends over pixel extents, so other sizes would blend the wrong rows.
  void validate(int64_t spatial_compression_ratio) const;
};

struct QwenImageEncoder3d {
  using DownLayer = std::variant<QwenImageResidualBlock, QwenImageResample>;

  QwenImageConv2d conv_in;
  std::vector<DownLayer> down_blocks;
  QwenImageMidBlock mid_block;
  QwenImageRMSNorm norm_out;
  QwenImageConv2d conv_out;

  // Produces 2 * z_dim channels: the posterior's mean and logvar before quant_conv.
  static QwenImageEncoder3d load(const WeightSource& weights, const std::string& prefix,
                                 const AutoencoderKLQwenImageConfig& config);
  Tensor forward(Tensor x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

struct QwenImageDecoder3d {
  QwenImageConv2d conv_in;
  QwenImageMidBlock mid_block;
  std::vector<QwenImageUpBlock> up_blocks;
  QwenImageRMSNorm norm_out;
  QwenImageConv2d conv_out;

  static QwenImageDecoder3d load(const WeightSource& weights, const std::string& prefix,
                                 const AutoencoderKLQwenImageConfig& config);
  Tensor forward(Tensor x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

class AutoencoderKLQwenImage {
 public:
  // `weights` holds the VAE's tensors under their diffusers names; every shape is checked against the
  // config, so a config from another model fails here with the first tensor that disagrees.
  AutoencoderKLQwenImage(const AutoencoderKLQwenImageConfig& config, const WeightSource& weights);

  // latents [B, z_dim, h, w] (denormalized, see denormalize_latents) -> images [B, input_channels, 8h, 8w]
  // in [-1, 1], clamped as the reference does. Runs on the weights' device in the latents' dtype.
  Tensor decode(const Tensor& latents) const;
  // decode, one overlapping tile at a time, as the reference's decode does after enable_tiling: the
  // activation peak is that of one tile instead of the whole image. Latents that fit in one tile are
  // decoded whole, exactly as decode does. Like the reference's tiled path, the tiled result is not
  // clamped to [-1, 1] (the pipeline's postprocessing clamps it).
  Tensor tiled_decode(const Tensor& latents, const VaeTiling& tiling) const;
  // images [B, input_channels, H, W] in [-1, 1] -> the posterior over [B, z_dim, H / 8, W / 8] (sizes
  // rounded down as the reference's stride-2 convs do). H and W must be at least 8. With `tiling`, a
  // picture larger than one tile is encoded one overlapping tile at a time, as the reference's encode does
  // after enable_tiling (its tiles blend over latents); it then needs H and W in whole latents.
  QwenImageLatentDistribution encode(const Tensor& images,
                                     const std::optional<VaeTiling>& tiling = std::nullopt) const;
  // The posterior's mode, as the pipelines use with sample_mode="argmax"; skips the logvar clamp.
  Tensor encode_mean(const Tensor& images, const std::optional<VaeTiling>& tiling = std::nullopt) const;

  // Pipeline-side latent scaling, in the reference's exact arithmetic (so results match bit for bit):
  // before decode, latents / (1 / std) + mean (QwenImagePipeline); after encode, (latents - mean) / std
  // (QwenImageEditPipeline) or (latents - mean) * (1 / std), the reciprocal rounded to the latents' dtype
  // first (the img2img and inpainting pipelines; it can differ from the division in the last bit). All take
  // [B, z_dim, h, w] on any device.
  Tensor denormalize_latents(const Tensor& latents) const;
  Tensor normalize_latents(const Tensor& latents) const;
  Tensor normalize_latents_by_inverse_std(const Tensor& latents) const;

  // Every tensor of the diffusers checkpoint for `config`, by name, with its stored shape: the causal
  // convs' 5-D kernels and the temporal convs (time_conv) that single images never read but the
  // published checkpoint holds.
  static std::vector<std::pair<std::string, Shape>> parameter_shapes(
      const AutoencoderKLQwenImageConfig& config);

  const AutoencoderKLQwenImageConfig& config() const { return config_; }
  // Visits every weight under its checkpoint name. The causal convs hold their single-frame 2D kernel
  // [out, in, kh, kw], not the stored [out, in, kt, kh, kw] one.
  void visit(const nn::ParameterVisitor& visitor);

 private:
  void check_decode_input(const Tensor& latents) const;
  // post_quant_conv and the decoder on the weights' device, without decode's clamp.
  Tensor run_decoder(const Tensor& latents) const;
  // quant_conv's output: the mean and logvar channels, unclamped.
  Tensor encode_moments(const Tensor& images, const std::optional<VaeTiling>& tiling) const;
  Tensor latent_statistic(const std::vector<float>& values, const Tensor& like) const;
  Tensor latent_inverse_std(const Tensor& like) const;

  AutoencoderKLQwenImageConfig config_;
  QwenImageEncoder3d encoder_;
  QwenImageConv2d quant_conv_;
  QwenImageConv2d post_quant_conv_;
  QwenImageDecoder3d decoder_;
};

}  // namespace canvas
