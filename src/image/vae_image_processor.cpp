// Each function follows its diffusers counterpart statement for statement (integer and float arithmetic
// included) and Pillow's integer compositing (libImaging/Paste.c, Convert.c, AlphaComposite.c).
#include "image/vae_image_processor.h"

#include <algorithm>
#include <string>
#include <vector>

#include "image/mask.h"
#include "image/resample.h"
#include "util/error.h"

namespace canvas::vae_image_processor {

namespace {

RgbImage black(int64_t width, int64_t height) {
  return RgbImage{width, height, std::vector<uint8_t>(static_cast<size_t>(width * height * 3)), {}};
}

// Image.paste(source, (x, y)): the overlap only, so offsets may be negative or reach past the edges.
void paste(RgbImage& target, const RgbImage& source, int64_t x, int64_t y) {
  const int64_t left = std::max<int64_t>(x, 0), right = std::min(x + source.width, target.width);
  const int64_t top = std::max<int64_t>(y, 0), bottom = std::min(y + source.height, target.height);
  if (right <= left) return;
  for (int64_t row = top; row < bottom; ++row) {
    const auto from = source.pixels.begin() + ((row - y) * source.width + (left - x)) * 3;
    std::copy(from, from + (right - left) * 3, target.pixels.begin() + (row * target.width + left) * 3);
  }
}

RgbImage lanczos(const RgbImage& image, int64_t width, int64_t height) {
  return canvas::resize(image, width, height, ResampleFilter::Lanczos);
}

// The picture's first or last row (column) stretched over `width` x `height`: Pillow's resize with a
// source box of zero height (width) at that edge, which blends the rows (columns) nearest to it. The
// reference passes no filter here, so Pillow's default, BICUBIC, applies.
RgbImage stretched_edge(const RgbImage& image, int64_t width, int64_t height, const ResampleBox& edge) {
  return canvas::resize(image, width, height, ResampleFilter::Bicubic, edge);
}

// _resize_and_fill: fitted inside and centred; the bars repeat the nearest edge.
RgbImage resize_and_fill(const RgbImage& image, int64_t width, int64_t height) {
  const double ratio = static_cast<double>(width) / static_cast<double>(height);
  const double source_ratio = static_cast<double>(image.width) / static_cast<double>(image.height);
  const int64_t fitted_width = ratio < source_ratio ? width : image.width * height / image.height;
  const int64_t fitted_height = ratio >= source_ratio ? height : image.height * width / image.width;
  const RgbImage fitted = lanczos(image, fitted_width, fitted_height);
  RgbImage result = black(width, height);
  paste(result, fitted, width / 2 - fitted_width / 2, height / 2 - fitted_height / 2);
  const auto fitted_w = static_cast<float>(fitted.width), fitted_h = static_cast<float>(fitted.height);
  if (ratio < source_ratio) {
    const int64_t bar = height / 2 - fitted_height / 2;
    if (bar > 0) {
      const auto w = static_cast<float>(width);
      paste(result, stretched_edge(fitted, width, bar, {0, 0, w, 0}), 0, 0);
      paste(result, stretched_edge(fitted, width, bar, {0, fitted_h, w, fitted_h}), 0, bar + fitted_height);
    }
  } else if (ratio > source_ratio) {
    const int64_t bar = width / 2 - fitted_width / 2;
    if (bar > 0) {
      const auto h = static_cast<float>(height);
      paste(result, stretched_edge(fitted, bar, height, {0, 0, 0, h}), 0, 0);
      paste(result, stretched_edge(fitted, bar, height, {fitted_w, 0, fitted_w, h}), bar + fitted_width, 0);
    }
  }
  return result;
}

// _resize_and_crop: covering the size and centred; the overflow is cut.
RgbImage resize_and_crop(const RgbImage& image, int64_t width, int64_t height) {
  const double ratio = static_cast<double>(width) / static_cast<double>(height);
  const double source_ratio = static_cast<double>(image.width) / static_cast<double>(image.height);
  const int64_t covering_width = ratio > source_ratio ? width : image.width * height / image.height;
  const int64_t covering_height = ratio <= source_ratio ? height : image.height * width / image.width;
  RgbImage result = black(width, height);
  paste(result, lanczos(image, covering_width, covering_height), width / 2 - covering_width / 2,
        height / 2 - covering_height / 2);
  return result;
}

RgbImage cropped_and_resized(const RgbImage& image, int64_t width, int64_t height, ResizeMode mode,
                             const std::optional<CropRegion>& crop_region) {
  check(width > 0 && height > 0,
        "the working size must be positive, got " + std::to_string(width) + "x" + std::to_string(height));
  return resize(crop_region ? crop(image, *crop_region) : image, width, height, mode);
}

// Python's floor division (the reference's `//` on a value that may be negative).
int64_t floor_div(int64_t a, int64_t b) {
  const int64_t quotient = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient;
}

// Grows [low, high) to `desired` (a float extent) around its centre, then shifts it back inside [0, limit)
// and clips it: the two branches of get_crop_region, written once.
void grow_to(int64_t& low, int64_t& high, double desired, int64_t limit) {
  const auto difference = static_cast<int64_t>(desired - static_cast<double>(high - low));
  low -= floor_div(difference, 2);
  high += difference - floor_div(difference, 2);
  if (high >= limit) {
    const int64_t overflow = high - limit;
    high -= overflow;
    low -= overflow;
  }
  if (low < 0) {
    high -= low;
    low = 0;
  }
  if (high >= limit) high = limit;
}

// Pillow's DIV255: x / 255 rounded, for x up to 255 * 255.
uint32_t div255(uint32_t x) {
  const uint32_t t = x + 128;
  return ((t >> 8) + t) >> 8;
}

}  // namespace

CropRegion get_crop_region(const RgbImage& mask, int64_t width, int64_t height, int64_t pad) {
  check(width > 0 && height > 0, "get_crop_region needs a positive working size");
  const GreyImage grey = to_grey(mask);
  const int64_t w = grey.width, h = grey.height;
  auto level = [&](int64_t x, int64_t y) { return grey.pixels[static_cast<size_t>(y * w + x)]; };
  auto column_empty = [&](int64_t x) {
    for (int64_t y = 0; y < h; ++y)
      if (level(x, y) != 0) return false;
    return true;
  };
  auto row_empty = [&](int64_t y) {
    for (int64_t x = 0; x < w; ++x)
      if (level(x, y) != 0) return false;
    return true;
  };
  int64_t crop_left = 0, crop_right = 0, crop_top = 0, crop_bottom = 0;
  while (crop_left < w && column_empty(crop_left)) ++crop_left;
  check(crop_left < w,
        "the mask is empty (all black), so there is no region to crop around (padding_mask_crop)");
  while (column_empty(w - 1 - crop_right)) ++crop_right;
  while (row_empty(crop_top)) ++crop_top;
  while (row_empty(h - 1 - crop_bottom)) ++crop_bottom;

  CropRegion region{std::max<int64_t>(crop_left - pad, 0), std::max<int64_t>(crop_top - pad, 0),
                    std::min(w - crop_right + pad, w), std::min(h - crop_bottom + pad, h)};
  const double region_ratio = static_cast<double>(region.width()) / static_cast<double>(region.height());
  const double working_ratio = static_cast<double>(width) / static_cast<double>(height);
  if (region_ratio > working_ratio) {
    grow_to(region.top, region.bottom, static_cast<double>(region.width()) / working_ratio, h);
  } else {
    grow_to(region.left, region.right, static_cast<double>(region.height()) * working_ratio, w);
  }
  return region;
}

RgbImage crop(const RgbImage& image, const CropRegion& region) {
  check(region.left >= 0 && region.top >= 0 && region.right <= image.width && region.bottom <= image.height &&
            region.width() > 0 && region.height() > 0,
        "the crop region (" + std::to_string(region.left) + ", " + std::to_string(region.top) + ", " +
            std::to_string(region.right) + ", " + std::to_string(region.bottom) +
            ") is empty or outside the " + std::to_string(image.width) + "x" + std::to_string(image.height) +
            " picture");
  RgbImage result = black(region.width(), region.height());
  paste(result, image, -region.left, -region.top);
  return result;
}

RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResizeMode mode) {
  switch (mode) {
    case ResizeMode::Fill:
      return resize_and_fill(image, width, height);
    case ResizeMode::Crop:
      return resize_and_crop(image, width, height);
    case ResizeMode::Default:
      break;
  }
  return lanczos(image, width, height);
}

Tensor preprocess(const RgbImage& image, int64_t width, int64_t height, ResizeMode mode,
                  const std::optional<CropRegion>& crop_region) {
  const RgbImage resized = cropped_and_resized(image, width, height, mode, crop_region);
  const int64_t pixels = width * height;
  std::vector<float> values(static_cast<size_t>(3 * pixels));
  for (int64_t p = 0; p < pixels; ++p) {
    for (int64_t c = 0; c < 3; ++c) {
      // 2x is exact, so a fused multiply-add could not round differently from the reference's two steps.
      const float unit = static_cast<float>(resized.pixels[static_cast<size_t>(p * 3 + c)]) / 255.0f;
      values[static_cast<size_t>(c * pixels + p)] = 2.0f * unit - 1.0f;
    }
  }
  return Tensor::from_floats(values, {1, 3, height, width});
}

Tensor preprocess_mask(const RgbImage& mask, int64_t width, int64_t height, ResizeMode mode,
                       const std::optional<CropRegion>& crop_region) {
  const GreyImage grey = to_grey(cropped_and_resized(mask, width, height, mode, crop_region));
  std::vector<float> values(grey.pixels.size());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(grey.pixels[i]) / 255.0f >= 0.5f ? 1.0f : 0.0f;
  }
  return Tensor::from_floats(values, {1, 1, height, width});
}

RgbImage apply_overlay(const RgbImage& mask, const RgbImage& init_image, const RgbImage& image,
                       const std::optional<CropRegion>& crop_region) {
  check(mask.width == init_image.width && mask.height == init_image.height,
        "apply_overlay: the mask is " + std::to_string(mask.width) + "x" + std::to_string(mask.height) +
            " but the picture " + std::to_string(init_image.width) + "x" + std::to_string(init_image.height));
  RgbImage generated = crop_region ? black(init_image.width, init_image.height) : image;
  if (crop_region) {
    paste(generated, resize(image, crop_region->width(), crop_region->height(), ResizeMode::Crop),
          crop_region->left, crop_region->top);
  }
  check(generated.width == init_image.width && generated.height == init_image.height,
        "apply_overlay: without a crop region the result must have the picture's size");
  const GreyImage grey = to_grey(mask);
  for (size_t p = 0; p < grey.pixels.size(); ++p) {
    // The original, premultiplied by the inverted grey mask (paste with an "L" matte onto transparent
    // black)...
    const uint32_t matte = 255u - grey.pixels[p];
    const uint32_t alpha = div255(255 * matte);
    if (alpha == 0) continue;
    // ...unpremultiplied again (RGBa -> RGBA)...
    uint32_t original[3];
    for (int c = 0; c < 3; ++c) {
      const uint32_t premultiplied = div255(init_image.pixels[p * 3 + c] * matte);
      original[c] = alpha == 255 ? premultiplied : std::min<uint32_t>(255 * premultiplied / alpha, 255);
    }
    // ...and alpha-composited over the opaque result (7 extra bits of precision, rounded divisions).
    const uint32_t source_weight = alpha * 255 * 255 * 128 / (alpha * 255 + 255 * (255 - alpha));
    const uint32_t result_weight = 255 * 128 - source_weight;
    for (int c = 0; c < 3; ++c) {
      const uint32_t t =
          original[c] * source_weight + generated.pixels[p * 3 + c] * result_weight + (0x80 << 7);
      generated.pixels[p * 3 + c] = static_cast<uint8_t>((((t >> 8) + t) >> 8) >> 7);
    }
  }
  return generated;
}

}  // namespace canvas::vae_image_processor
