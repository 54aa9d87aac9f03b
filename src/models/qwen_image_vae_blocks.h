// The building blocks of AutoencoderKLQwenImage (diffusers autoencoder_kl_qwenimage.py), restricted to
// single images: every activation is one frame, laid out [N, C, H, W] with the frame axis dropped.
//
// What one frame does to the reference's 3D machinery:
//  - QwenImageCausalConv3d pads time causally with 2 * pad_t zeros in front and nothing behind. On the
//    first (and only) chunk the feature cache is empty, so a (kt, kh, kw) kernel over that padded input
//    yields one frame in which only the last temporal tap meets data: it equals a 2D conv with
//    weight[:, :, kt - 1]. That slice is taken once, at load.
//  - QwenImageResample's time_conv runs only from the second chunk on (the first chunk just primes the
//    cache), so upsample3d / downsample3d act exactly as upsample2d / downsample2d and time_conv weights
//    are never read.
//  - Attention is already per frame in the reference.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "models/nn.h"

namespace canvas {

// An nn.Conv2d, or a QwenImageCausalConv3d reduced to its single-frame 2D equivalent.
struct QwenImageConv2d {
  Tensor weight;  // [out, in, kh, kw]
  Tensor bias;    // [out]
  ops::Conv2dParams params;

  static QwenImageConv2d load(const WeightSource& weights, const std::string& prefix, int64_t in_channels,
                              int64_t out_channels, int64_t kernel, const ops::Conv2dParams& params);
  // Reads the [out, in, k, k, k] weight of a causal 3D conv (cubic kernel, padding k / 2 in every axis,
  // as the VAE builds them) and keeps its last temporal slice.
  static QwenImageConv2d load_causal3d(const WeightSource& weights, const std::string& prefix,
                                       int64_t in_channels, int64_t out_channels, int64_t kernel);
  Tensor operator()(const Tensor& x) const { return ops::conv2d(x, weight, bias, params); }
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// QwenImageRMS_norm without bias (the VAE never enables it): F.normalize over channels * sqrt(C) * gamma.
struct QwenImageRMSNorm {
  Tensor gamma;  // viewed as [C, 1, 1] to broadcast over [N, C, H, W]
  float scale = 1.0f;

  // `images` as in the reference: gamma is stored [C, 1, 1] for images and [C, 1, 1, 1] otherwise.
  static QwenImageRMSNorm load(const WeightSource& weights, const std::string& prefix, int64_t dim,
                               bool images);
  Tensor operator()(const Tensor& x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

struct QwenImageResidualBlock {
  QwenImageRMSNorm norm1, norm2;
  QwenImageConv2d conv1, conv2;
  std::optional<QwenImageConv2d> conv_shortcut;  // only when the channel count changes

  static QwenImageResidualBlock load(const WeightSource& weights, const std::string& prefix, int64_t in_dim,
                                     int64_t out_dim);
  Tensor forward(const Tensor& x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// Single-head self-attention over the spatial positions of each image.
struct QwenImageAttentionBlock {
  QwenImageRMSNorm norm;
  QwenImageConv2d to_qkv, proj;

  static QwenImageAttentionBlock load(const WeightSource& weights, const std::string& prefix, int64_t dim);
  Tensor forward(const Tensor& x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// QwenImageResample in its spatial part; `resample` is the conv the reference keeps at resample.1.
struct QwenImageResample {
  enum class Mode { Upsample, Downsample };
  Mode mode = Mode::Upsample;
  QwenImageConv2d resample;

  // Upsample: nearest 2x then a 3x3 conv from dim to dim / 2. Downsample: zero-pad right and bottom by
  // one, then a stride-2 3x3 conv from dim to dim.
  static QwenImageResample load(const WeightSource& weights, const std::string& prefix, int64_t dim,
                                Mode mode);
  // Takes x by value so an upsampler can release its input before the conv.
  Tensor forward(Tensor x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

// resnets[0], then each attention followed by the next resnet.
struct QwenImageMidBlock {
  std::vector<QwenImageAttentionBlock> attentions;
  std::vector<QwenImageResidualBlock> resnets;

  static QwenImageMidBlock load(const WeightSource& weights, const std::string& prefix, int64_t dim);
  Tensor forward(Tensor x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

struct QwenImageUpBlock {
  std::vector<QwenImageResidualBlock> resnets;
  std::optional<QwenImageResample> upsampler;  // upsamplers.0 in the reference

  // num_res_blocks + 1 residual blocks, the first from in_dim to out_dim.
  static QwenImageUpBlock load(const WeightSource& weights, const std::string& prefix, int64_t in_dim,
                               int64_t out_dim, int64_t num_res_blocks, bool upsample);
  Tensor forward(Tensor x) const;
  void visit(const std::string& prefix, const nn::ParameterVisitor& visitor);
};

}  // namespace canvas
