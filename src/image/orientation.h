// The orientation a camera records (EXIF tag 0x0112, values 1-8) and turning pixels upright the way
// PIL's ImageOps.exif_transpose does.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "image/image.h"

namespace canvas {

// The Orientation tag of an EXIF block's first IFD, as PIL's Image.getexif() reads it: an optional
// "Exif\0\0" prefix, then a little- or big-endian TIFF header. Only integer-typed tags with one value
// count; the last one wins; a value outside 1-8 reads as 0 (present, but nothing to do). nullopt when the
// block is malformed or has no such tag.
std::optional<int> exif_orientation(std::span<const uint8_t> exif);

// The first `tiff:Orientation="N` or `tiff:Orientation>N` (one digit) in an XMP packet, which PIL uses
// when the EXIF has no Orientation tag. nullopt when there is none.
std::optional<int> xmp_orientation(std::string_view xmp);

// Turns the pixels and alpha upright for orientation 2-8 (mirror, rotations and transposes); any other
// value leaves the image as it is, as exif_transpose does.
void apply_orientation(DecodedImage& image, int orientation);

}  // namespace canvas
