// Pictures read from users' files: upright 8-bit RGB, with the transparency kept beside it.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "io/png_image.h"

namespace canvas {

// 64 megapixels: far above what the models take (about 1 megapixel), low enough that a hostile header
// cannot make us allocate gigabytes. Checked against the header before any pixel buffer is allocated.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

enum class ImageFormat { Png, Jpeg, WebP };
std::string_view image_format_name(ImageFormat format);

struct DecodedImage {
  ImageFormat format = ImageFormat::Png;
  // What the reference pipelines see: diffusers' load_image is
  // `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`, so the EXIF (or XMP) orientation is applied
  // and the pixels are PIL's convert("RGB"): alpha dropped (not composited), grey replicated, palettes
  // looked up, 16-bit samples cut to their high byte, except 16-bit grey PNGs, which PIL opens as "I;16"
  // and clips to 255. A PNG's text chunks (tEXt, zTXt, iTXt) are kept in rgb.text.
  RgbImage rgb;
  // One byte per pixel, row-major, in the same orientation as `rgb`; empty when the file has neither an
  // alpha channel nor tRNS transparency. Kept for masks (e.g. inpainting where the picture is transparent).
  // It is PIL's convert("RGBA") alpha (16-bit alpha cut to its high byte) except for a tRNS colour key on
  // 2-, 4- or 16-bit samples: PIL compares the key with the already reduced samples (or ignores it, for
  // 16-bit grey), we follow the PNG specification.
  std::vector<uint8_t> alpha;

  bool has_alpha() const { return !alpha.empty(); }
};

}  // namespace canvas
