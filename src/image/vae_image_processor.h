// diffusers' VaeImageProcessor as the Qwen-Image img2img and inpainting pipelines apply it to PIL pictures:
// the picture and the mask are cropped to a region (padding_mask_crop), resized with LANCZOS in one of three
// modes, and turned into tensors; after decoding, apply_overlay pastes the result back into the picture.
// Bit for bit with Pillow 13.0.0 and diffusers 0.42.1 (tests/golden/inpaint/README.md, section blocks/).
#pragma once

#include <cstdint>
#include <optional>

#include "image/image.h"
#include "tensor/tensor.h"

namespace canvas::vae_image_processor {

// How a picture meets a size of another aspect ratio.
enum class ResizeMode {
  Default,  // stretched to the size
  Fill,     // fitted inside, centred, the bars filled with the edge rows or columns stretched (BICUBIC)
  Crop,     // covering the size, centred, the overflow cut off
};

// [left, right) x [top, bottom) in pixels: the reference's crops_coords (x1, y1, x2, y2).
struct CropRegion {
  int64_t left = 0;
  int64_t top = 0;
  int64_t right = 0;
  int64_t bottom = 0;

  int64_t width() const { return right - left; }
  int64_t height() const { return bottom - top; }
  bool operator==(const CropRegion&) const = default;
};

// get_crop_region(mask, width, height, pad): the bounding box of the mask's nonzero grey levels (PIL
// convert("L")), grown by `pad` and clipped to the mask, then grown along one axis towards the aspect
// width:height of the working size (centred, shifted back inside, clipped). Throws canvas::Error when the
// mask has no nonzero pixel (the reference then divides by zero or crops an inverted box).
CropRegion get_crop_region(const RgbImage& mask, int64_t width, int64_t height, int64_t pad);

// Image.crop(region); the region must lie inside the picture.
RgbImage crop(const RgbImage& image, const CropRegion& region);

// VaeImageProcessor.resize(picture, height, width, resize_mode) with the processor's LANCZOS and no
// reducing_gap.
RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResizeMode mode);

// VaeImageProcessor.preprocess(picture, height, width, resize_mode, crops_coords): cropped, resized, then
// float32 x / 255 and 2x - 1: [1, 3, height, width] in [-1, 1] on the host. `width` and `height` are the
// working size, which the pipelines floor to multiples of 16 (get_default_height_width).
Tensor preprocess(const RgbImage& image, int64_t width, int64_t height, ResizeMode mode,
                  const std::optional<CropRegion>& crop_region);

// The inpainting pipelines' mask_processor (do_normalize False, do_binarize True, do_convert_grayscale
// True) on an RGB mask: cropped and resized like the picture (the RGB picture, before the grey conversion),
// convert("L"), float32 v / 255, then 0 below 0.5 and 1 from 0.5 up (grey level >= 128):
// [1, 1, height, width] of 0 and 1 on the host.
Tensor preprocess_mask(const RgbImage& mask, int64_t width, int64_t height, ResizeMode mode,
                       const std::optional<CropRegion>& crop_region);

// apply_overlay(mask, init_image, image, crop_coords): `image` (the decoded result) resized into the crop
// region with ResizeMode::Crop and placed on black (or taken whole, at the picture's size, without a
// region), then `init_image` alpha-composited over it with alpha = 255 - L(mask), in Pillow's integer
// premultiplied arithmetic: where the mask is black the original pixels come back exactly. The mask is the
// one given to the pipeline (blurred if it was, not binarized) and must have the picture's size.
RgbImage apply_overlay(const RgbImage& mask, const RgbImage& init_image, const RgbImage& image,
                       const std::optional<CropRegion>& crop_region);

}  // namespace canvas::vae_image_processor
