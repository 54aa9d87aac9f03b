#include "app/latent_preview.h"

#include <cmath>
#include <vector>

#include "util/error.h"

namespace canvas::app {

namespace {

// preview_to_image's byte: ((x + 1) / 2).clamp(0, 1) * 255, truncated by the uint8 cast. fmax and fmin
// return the number when the other argument is a NaN, so a NaN becomes 0 rather than an undefined cast.
uint8_t preview_byte(float value) {
  const float unit = std::fmin(std::fmax((value + 1.0f) / 2.0f, 0.0f), 1.0f);
  return static_cast<uint8_t>(unit * 255.0f);
}

}  // namespace

RgbImage latent_preview(const Tensor& denoised) {
  check(denoised.ndim() == 4 && denoised.dim(0) == 1 && denoised.dim(1) == kPreviewLatentChannels &&
            denoised.dim(2) > 0 && denoised.dim(3) > 0,
        "a latent preview takes [1, " + std::to_string(kPreviewLatentChannels) + ", h, w] latents, got " +
            shape_str(denoised.shape()));
  const int64_t height = denoised.dim(2), width = denoised.dim(3);
  const int64_t plane = height * width;
  const std::vector<float> latents = denoised.to_floats();
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(plane * 3));
  for (int64_t pixel = 0; pixel < plane; ++pixel) {
    for (int rgb = 0; rgb < 3; ++rgb) {
      float value = kWan21LatentRgbBias[rgb];
      for (int channel = 0; channel < kPreviewLatentChannels; ++channel)
        value += latents[static_cast<size_t>(channel * plane + pixel)] * kWan21LatentRgbFactors[channel][rgb];
      image.pixels[static_cast<size_t>(pixel * 3 + rgb)] = preview_byte(value);
    }
  }
  return image;
}

}  // namespace canvas::app
