#include "pipeline/image_latents.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "pipeline/latent_packing.h"
#include "util/error.h"

namespace canvas {

namespace {

// torch's nearest source indices along one axis (compute_scales_value<float> and floorf).
std::vector<int64_t> nearest_sources(int64_t in_size, int64_t out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  std::vector<int64_t> sources(static_cast<size_t>(out_size));
  for (int64_t i = 0; i < out_size; ++i) {
    const auto source = static_cast<int64_t>(std::floor(static_cast<float>(i) * scale));
    sources[static_cast<size_t>(i)] = std::min(source, in_size - 1);
  }
  return sources;
}

}  // namespace

Tensor sample_latent_distribution(const QwenImageLatentDistribution& posterior, TorchGenerator& generator) {
  check(posterior.mean.defined() && posterior.logvar.defined() &&
            posterior.mean.shape() == posterior.logvar.shape() &&
            posterior.mean.dtype() == posterior.logvar.dtype(),
        "the posterior's mean and logvar must be defined and share shape and dtype");
  const Tensor draw =
      generator.randn(posterior.mean.shape()).to(posterior.mean.dtype()).to(posterior.mean.device());
  const Tensor std_dev = ops::exp(ops::scale(posterior.logvar, 0.5f));
  return ops::add(posterior.mean, ops::mul(std_dev, draw));
}

Tensor interpolate_nearest(const Tensor& x, int64_t height, int64_t width) {
  check(x.ndim() == 4 && x.dtype() == DType::F32 && x.device().is_cpu(),
        "interpolate_nearest takes a host F32 [B, C, H, W], got " + shape_str(x.shape()));
  check(height > 0 && width > 0 && x.numel() > 0, "interpolate_nearest needs nonempty sizes");
  const Tensor input = x.contiguous();
  const int64_t planes = x.dim(0) * x.dim(1), in_height = x.dim(2), in_width = x.dim(3);
  const std::vector<int64_t> rows = nearest_sources(in_height, height);
  const std::vector<int64_t> columns = nearest_sources(in_width, width);
  std::vector<float> values(static_cast<size_t>(planes * height * width));
  const float* source = input.data<float>();
  size_t next = 0;
  for (int64_t plane = 0; plane < planes; ++plane) {
    for (int64_t row : rows) {
      const float* source_row = source + (plane * in_height + row) * in_width;
      for (int64_t column : columns) values[next++] = source_row[column];
    }
  }
  return Tensor::from_floats(values, {x.dim(0), x.dim(1), height, width});
}

Tensor pack_mask_latents(const Tensor& mask_condition, int64_t latent_height, int64_t latent_width,
                         int64_t latent_channels) {
  check(mask_condition.ndim() == 4 && mask_condition.dim(0) == 1 && mask_condition.dim(1) == 1,
        "the processed mask must be [1, 1, H, W], got " + shape_str(mask_condition.shape()));
  check(latent_height % 2 == 0 && latent_width % 2 == 0 && latent_channels > 0,
        "the latent grid must have even sides to be packed");
  const Tensor grid = interpolate_nearest(mask_condition, latent_height, latent_width);
  const Tensor repeated = ops::expand(grid, {1, latent_channels, latent_height, latent_width}).contiguous();
  return pack_latents(repeated);
}

Tensor blend_masked_latents(const Tensor& mask, const Tensor& image_latents, const Tensor& latents) {
  check(mask.shape() == latents.shape() && image_latents.shape() == latents.shape() &&
            mask.dtype() == latents.dtype() && image_latents.dtype() == latents.dtype(),
        "the inpainting blend needs mask, image latents and latents of one shape and dtype");
  const Tensor ones =
      Tensor::from_floats(std::vector<float>(static_cast<size_t>(mask.numel()), 1.0f), mask.shape())
          .to(mask.dtype())
          .to(mask.device());
  return ops::add(ops::mul(ops::sub(ones, mask), image_latents), ops::mul(mask, latents));
}

}  // namespace canvas
