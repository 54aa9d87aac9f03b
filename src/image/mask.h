// Inpainting masks, made from pictures as the reference makes them with Pillow: grey levels, inversion,
// the picture's transparency, and the Gaussian blur of `--mask-blur`.
#pragma once

#include <cstdint>
#include <vector>

#include "image/image.h"

namespace canvas {

// One 8-bit level per pixel, row-major: PIL's mode "L".
struct GreyImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;
};

// PIL's convert("L") of an RGB picture: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, the ITU-R 601-2
// luma in 16-bit fixed point (it rounds differently from the documented R * 299/1000 + G * 587/1000 +
// B * 114/1000).
GreyImage to_grey(const RgbImage& image);

// ImageOps.invert: 255 - v on every channel (`--invert-mask`).
RgbImage invert(const RgbImage& image);

// The mask of a picture's transparency (`--mask-from-alpha`): 255 - alpha on all three channels, so that
// transparent pixels are repainted and opaque ones kept (ComfyUI's LoadImage convention; diffusers has
// none). Throws canvas::Error when the picture has no alpha channel.
RgbImage mask_from_alpha(const DecodedImage& image);

// ImageFilter.GaussianBlur(radius), which VaeImageProcessor.blur applies (`--mask-blur`): along each axis
// three extended box blurs whose variances add up to radius^2, in Pillow's 8-bit fixed point
// (libImaging/BoxBlur.c), rows first. Radius 0 returns the picture; a negative or non-finite one throws
// canvas::Error.
RgbImage gaussian_blur(const RgbImage& image, float radius);

}  // namespace canvas
