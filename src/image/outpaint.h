// Outpainting: the canvas grown around a picture and prepared for inpainting as A1111 and ComfyUI do (the
// new area edge-extended for the VAE and masked white), and the picture pasted back over the result.
#pragma once

#include <cstdint>

#include "io/png_image.h"

namespace canvas {

// Pixels added on each side of the picture.
struct OutpaintMargins {
  int64_t left = 0;
  int64_t top = 0;
  int64_t right = 0;
  int64_t bottom = 0;

  bool operator==(const OutpaintMargins&) const = default;
};

// The margins with right and bottom grown so that the canvas around a width x height picture has sides
// that are multiples of `multiple` (the working size is floored to them otherwise, which would resize the
// picture and make the paste-back inexact).
OutpaintMargins aligned_margins(const OutpaintMargins& margins, int64_t width, int64_t height,
                                int64_t multiple);

// The picture on a canvas grown by `margins`, each new pixel taking the colour of the picture's nearest
// pixel (edge-extend: the VAE sees a plausible continuation rather than a flat colour).
RgbImage extend_canvas(const RgbImage& picture, const OutpaintMargins& margins);

// The inpainting mask of that canvas: white over the margins (repainted), black over the picture (kept).
RgbImage outpaint_mask(const RgbImage& picture, const OutpaintMargins& margins);

// `canvas` with `picture` copied in at (margins.left, margins.top); the canvas must be the picture grown by
// the margins.
RgbImage paste_picture(RgbImage canvas, const RgbImage& picture, const OutpaintMargins& margins);

}  // namespace canvas
