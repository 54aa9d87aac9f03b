#include "models/qwen_image_vae_blocks.h"

#include <cmath>
#include <utility>

namespace canvas {

namespace {

// F.normalize's default eps.
constexpr float kNormalizeEps = 1e-12f;

}  // namespace

QwenImageConv2d QwenImageConv2d::load(const WeightSource& weights, const std::string& prefix,
                                      int64_t in_channels, int64_t out_channels, int64_t kernel,
                                      const ops::Conv2dParams& params) {
  return {weights.get(prefix + ".weight", {out_channels, in_channels, kernel, kernel}),
          weights.get(prefix + ".bias", {out_channels}), params};
}

QwenImageConv2d QwenImageConv2d::load_causal3d(const WeightSource& weights, const std::string& prefix,
                                               int64_t in_channels, int64_t out_channels, int64_t kernel) {
  Tensor full = weights.get(prefix + ".weight", {out_channels, in_channels, kernel, kernel, kernel});
  check(is_float(full.dtype()) && !is_block_quantized(full.dtype()),
        "VAE weight '" + prefix + ".weight' is stored as " + std::string(dtype_name(full.dtype())) +
            "; the VAE needs a plain float dtype");
  Tensor last_tap = full.select(2, kernel - 1);
  // A 1-tap kernel's slice is already a dense view of the checkpoint; wider ones are gathered once at
  // load rather than on every conv.
  if (!last_tap.is_contiguous()) {
    OwnerScope owner({"vae", -1, MemoryRole::Weights});
    Tensor dense = Tensor::empty(last_tap.shape(), last_tap.dtype(), last_tap.device());
    ops::copy_into(last_tap, dense);
    last_tap = dense;
  }
  return {last_tap, weights.get(prefix + ".bias", {out_channels}), ops::Conv2dParams::same(kernel / 2)};
}

void QwenImageConv2d::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  visitor(prefix + ".weight", weight);
  visitor(prefix + ".bias", bias);
}

QwenImageRMSNorm QwenImageRMSNorm::load(const WeightSource& weights, const std::string& prefix, int64_t dim,
                                        bool images) {
  Shape stored = images ? Shape{dim, 1, 1} : Shape{dim, 1, 1, 1};
  return {weights.get(prefix + ".gamma", stored).view({dim, 1, 1}), std::sqrt(static_cast<float>(dim))};
}

Tensor QwenImageRMSNorm::operator()(const Tensor& x) const {
  Tensor normalized = ops::l2_normalize(x, 1, kNormalizeEps);
  normalized = ops::scale(normalized, scale);
  return ops::mul(normalized, gamma);
}

void QwenImageRMSNorm::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  visitor(prefix + ".gamma", gamma);
}

QwenImageResidualBlock QwenImageResidualBlock::load(const WeightSource& weights, const std::string& prefix,
                                                    int64_t in_dim, int64_t out_dim) {
  QwenImageResidualBlock block;
  block.norm1 = QwenImageRMSNorm::load(weights, prefix + ".norm1", in_dim, false);
  block.conv1 = QwenImageConv2d::load_causal3d(weights, prefix + ".conv1", in_dim, out_dim, 3);
  block.norm2 = QwenImageRMSNorm::load(weights, prefix + ".norm2", out_dim, false);
  block.conv2 = QwenImageConv2d::load_causal3d(weights, prefix + ".conv2", out_dim, out_dim, 3);
  if (in_dim != out_dim) {
    block.conv_shortcut =
        QwenImageConv2d::load_causal3d(weights, prefix + ".conv_shortcut", in_dim, out_dim, 1);
  }
  return block;
}

Tensor QwenImageResidualBlock::forward(const Tensor& x) const {
  Tensor shortcut = conv_shortcut ? (*conv_shortcut)(x) : x;
  // One statement per op, so each full-resolution intermediate is released as soon as the next exists.
  Tensor h = norm1(x);
  h = ops::silu(h);
  h = conv1(h);
  h = norm2(h);
  h = ops::silu(h);
  // Dropout sits here in the reference; it is the identity at inference.
  h = conv2(h);
  return ops::add(h, shortcut);
}

void QwenImageResidualBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  norm1.visit(prefix + ".norm1", visitor);
  conv1.visit(prefix + ".conv1", visitor);
  norm2.visit(prefix + ".norm2", visitor);
  conv2.visit(prefix + ".conv2", visitor);
  if (conv_shortcut) conv_shortcut->visit(prefix + ".conv_shortcut", visitor);
}

QwenImageAttentionBlock QwenImageAttentionBlock::load(const WeightSource& weights, const std::string& prefix,
                                                      int64_t dim) {
  return {QwenImageRMSNorm::load(weights, prefix + ".norm", dim, true),
          QwenImageConv2d::load(weights, prefix + ".to_qkv", dim, 3 * dim, 1, {}),
          QwenImageConv2d::load(weights, prefix + ".proj", dim, dim, 1, {})};
}

Tensor QwenImageAttentionBlock::forward(const Tensor& x) const {
  const int64_t batch = x.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  // [N, 3C, H, W] -> [N, HW, 3C]: one row of [q | k | v] per position. Made dense so every head row the
  // attention kernel reads is contiguous.
  Tensor rows = to_qkv(norm(x)).view({batch, 3 * channels, height * width}).transpose(1, 2).contiguous();
  auto part = [&](int64_t index) {
    return rows.slice(2, index * channels, (index + 1) * channels).unsqueeze(1);
  };
  Tensor attended =
      ops::attention(part(0), part(1), part(2), {}, 1.0f / std::sqrt(static_cast<float>(channels)));
  Tensor image = attended.squeeze(1).transpose(1, 2).reshape({batch, channels, height, width});
  return ops::add(proj(image), x);
}

void QwenImageAttentionBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  norm.visit(prefix + ".norm", visitor);
  to_qkv.visit(prefix + ".to_qkv", visitor);
  proj.visit(prefix + ".proj", visitor);
}

QwenImageResample QwenImageResample::load(const WeightSource& weights, const std::string& prefix, int64_t dim,
                                          Mode mode) {
  const std::string conv_prefix = prefix + ".resample.1";
  if (mode == Mode::Upsample) {
    return {mode, QwenImageConv2d::load(weights, conv_prefix, dim, dim / 2, 3, ops::Conv2dParams::same(1))};
  }
  ops::Conv2dParams zero_pad_right_bottom{.stride = 2, .pad_bottom = 1, .pad_right = 1};
  return {mode, QwenImageConv2d::load(weights, conv_prefix, dim, dim, 3, zero_pad_right_bottom)};
}

Tensor QwenImageResample::forward(Tensor x) const {
  if (mode == Mode::Downsample) return resample(x);
  // nearest-exact and nearest agree at an integer scale of 2: both read source pixel i / 2.
  x = ops::upsample_nearest2x(x);
  return resample(x);
}

void QwenImageResample::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  resample.visit(prefix + ".resample.1", visitor);
}

QwenImageMidBlock QwenImageMidBlock::load(const WeightSource& weights, const std::string& prefix,
                                          int64_t dim) {
  // The reference always builds it with num_layers=1.
  QwenImageMidBlock block;
  block.resnets.push_back(QwenImageResidualBlock::load(weights, prefix + ".resnets.0", dim, dim));
  block.attentions.push_back(QwenImageAttentionBlock::load(weights, prefix + ".attentions.0", dim));
  block.resnets.push_back(QwenImageResidualBlock::load(weights, prefix + ".resnets.1", dim, dim));
  return block;
}

Tensor QwenImageMidBlock::forward(Tensor x) const {
  x = resnets.front().forward(x);
  for (size_t i = 0; i < attentions.size(); ++i) {
    x = attentions[i].forward(x);
    x = resnets[i + 1].forward(x);
  }
  return x;
}

void QwenImageMidBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  for (size_t i = 0; i < attentions.size(); ++i) {
    attentions[i].visit(prefix + ".attentions." + std::to_string(i), visitor);
  }
  for (size_t i = 0; i < resnets.size(); ++i)
    resnets[i].visit(prefix + ".resnets." + std::to_string(i), visitor);
}

QwenImageUpBlock QwenImageUpBlock::load(const WeightSource& weights, const std::string& prefix,
                                        int64_t in_dim, int64_t out_dim, int64_t num_res_blocks,
                                        bool upsample) {
  QwenImageUpBlock block;
  for (int64_t i = 0; i <= num_res_blocks; ++i) {
    block.resnets.push_back(QwenImageResidualBlock::load(weights, prefix + ".resnets." + std::to_string(i),
                                                         i == 0 ? in_dim : out_dim, out_dim));
  }
  if (upsample) {
    block.upsampler = QwenImageResample::load(weights, prefix + ".upsamplers.0", out_dim,
                                              QwenImageResample::Mode::Upsample);
  }
  return block;
}

Tensor QwenImageUpBlock::forward(Tensor x) const {
  for (const QwenImageResidualBlock& resnet : resnets) x = resnet.forward(x);
  return upsampler ? upsampler->forward(std::move(x)) : x;
}

void QwenImageUpBlock::visit(const std::string& prefix, const nn::ParameterVisitor& visitor) {
  for (size_t i = 0; i < resnets.size(); ++i)
    resnets[i].visit(prefix + ".resnets." + std::to_string(i), visitor);
  if (upsampler) upsampler->visit(prefix + ".upsamplers.0", visitor);
}

}  // namespace canvas
