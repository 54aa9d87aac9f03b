// The three decoders behind decode_image. Each gives the pixels as stored (before orientation) and the
// metadata that may orient them; decode.cpp applies the orientation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "image/image.h"

namespace canvas {

struct CodecOutput {
  DecodedImage image;
  // The EXIF block as PIL's info["exif"] holds it (with or without the "Exif\0\0" prefix); empty if none.
  std::vector<uint8_t> exif;
  // The XMP packet (PIL's info["xmp"] or info["XML:com.adobe.xmp"]); empty if none.
  std::string xmp;
};

CodecOutput decode_png(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels);
CodecOutput decode_jpeg(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels);
CodecOutput decode_webp(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels);

// Throws unless the header's size is at least 1x1 and at most `max_pixels` pixels. Called by each codec
// as soon as it knows the size, before it allocates for the pixels.
void check_image_size(int64_t width, int64_t height, const std::string& name, int64_t max_pixels);

// RGB and alpha buffers sized for width x height (alpha only when `with_alpha`).
DecodedImage allocate_image(ImageFormat format, int64_t width, int64_t height, bool with_alpha);

}  // namespace canvas
