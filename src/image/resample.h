// Resizing 8-bit RGB pictures bit for bit as Pillow's Image.resize does: diffusers' VaeImageProcessor
// resizes with LANCZOS, the Qwen2-VL image processor with BICUBIC.
#pragma once

#include <cstdint>

#include "io/png_image.h"

namespace canvas {

enum class ResampleFilter { Bicubic, Lanczos };

// `image.resize((width, height), filter)` of Pillow 13.0.0 with its defaults (whole picture,
// reducing_gap=None): separable convolution, the filter stretched over the scale when shrinking,
// coefficients in 22-bit fixed point, each pass rounded and clipped to 8 bits; the horizontal pass first
// unless the height loses more than twice as many pixels as the width. The text chunks are not carried
// over. Throws canvas::Error unless the result has 1 to kMaxImagePixels pixels.
RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResampleFilter filter);

// Pillow's `box`: the source rectangle, in input pixels, that is stretched over the result. Its edges may
// be fractional and it may be empty along an axis (VaeImageProcessor's "fill" mode stretches the first or
// last row with a box of zero height: each output row then blends the rows nearest the edge).
struct ResampleBox {
  float left = 0;
  float top = 0;
  float right = 0;
  float bottom = 0;
};

// `image.resize((width, height), filter, box=box)`. Throws canvas::Error for a box outside the picture or
// with right < left or bottom < top, as Pillow refuses them.
RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResampleFilter filter,
                const ResampleBox& box);

}  // namespace canvas
