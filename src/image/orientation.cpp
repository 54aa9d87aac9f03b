#include "image/orientation.h"

#include <cstring>
#include <string>
#include <vector>

namespace canvas {

namespace {

// Reads unsigned integers of a TIFF block in its byte order; every read is bounds-checked by the caller.
struct TiffReader {
  std::span<const uint8_t> bytes;
  bool big_endian;

  bool has(size_t offset, size_t length) const {
    return offset <= bytes.size() && length <= bytes.size() - offset;
  }
  uint64_t read(size_t offset, int length) const {
    uint64_t value = 0;
    for (int i = 0; i < length; ++i) {
      const uint64_t byte = bytes[offset + (big_endian ? i : length - 1 - i)];
      value = value << 8 | byte;
    }
    return value;
  }
};

// TIFF field types PIL turns into a plain integer when the count is 1, and their sizes.
std::optional<int> integer_type_size(uint64_t type) {
  switch (type) {
    case 1:  // BYTE
    case 6:  // SBYTE
      return 1;
    case 3:  // SHORT
    case 8:  // SSHORT
      return 2;
    case 4:  // LONG
    case 9:  // SLONG
      return 4;
    default:
      return std::nullopt;
  }
}

int64_t sign_extend(uint64_t value, uint64_t type, int size) {
  const bool is_signed = type == 6 || type == 8 || type == 9;
  if (!is_signed) return static_cast<int64_t>(value);
  const int shift = 64 - 8 * size;
  return static_cast<int64_t>(value << shift) >> shift;
}

}  // namespace

std::optional<int> exif_orientation(std::span<const uint8_t> exif) {
  static constexpr uint8_t kPrefix[] = {'E', 'x', 'i', 'f', 0, 0};
  while (exif.size() >= sizeof(kPrefix) && std::memcmp(exif.data(), kPrefix, sizeof(kPrefix)) == 0) {
    exif = exif.subspan(sizeof(kPrefix));
  }
  if (exif.size() < 8) return std::nullopt;
  TiffReader tiff{exif, exif[0] == 'M'};
  const bool little_header = exif[0] == 'I' && exif[1] == 'I' && exif[2] == 0x2a && exif[3] == 0;
  const bool big_header = exif[0] == 'M' && exif[1] == 'M' && exif[2] == 0 && exif[3] == 0x2a;
  if (!little_header && !big_header) return std::nullopt;

  const uint64_t ifd = tiff.read(4, 4);
  if (!tiff.has(ifd, 2)) return std::nullopt;
  const uint64_t entries = tiff.read(ifd, 2);
  std::optional<int> orientation;
  // Like PIL, the entries read before a truncation still count.
  for (uint64_t i = 0; i < entries; ++i) {
    const size_t entry = ifd + 2 + i * 12;
    if (!tiff.has(entry, 12)) break;
    if (tiff.read(entry, 2) != 0x0112) continue;
    const uint64_t type = tiff.read(entry + 2, 2);
    const std::optional<int> size = integer_type_size(type);
    if (!size || tiff.read(entry + 4, 4) != 1) continue;
    const int64_t value = sign_extend(tiff.read(entry + 8, *size), type, *size);
    orientation = value >= 1 && value <= 8 ? static_cast<int>(value) : 0;
  }
  return orientation;
}

std::optional<int> xmp_orientation(std::string_view xmp) {
  static constexpr std::string_view kTag = "tiff:Orientation";
  for (size_t at = xmp.find(kTag); at != std::string_view::npos; at = xmp.find(kTag, at + 1)) {
    std::string_view rest = xmp.substr(at + kTag.size());
    if (rest.starts_with("=\"")) {
      rest.remove_prefix(2);
    } else if (rest.starts_with(">")) {
      rest.remove_prefix(1);
    } else {
      continue;
    }
    if (!rest.empty() && rest[0] >= '0' && rest[0] <= '9') return rest[0] - '0';
  }
  return std::nullopt;
}

namespace {

// Rewrites one interleaved plane (`channels` bytes a pixel) for the orientation; `width` and `height`
// are the stored size. Orientations 5-8 swap the two.
std::vector<uint8_t> orient_plane(const std::vector<uint8_t>& plane, int64_t width, int64_t height,
                                  int channels, int orientation) {
  const bool swaps = orientation >= 5;
  const int64_t out_width = swaps ? height : width;
  const int64_t out_height = swaps ? width : height;
  std::vector<uint8_t> out(plane.size());
  for (int64_t y = 0; y < out_height; ++y) {
    for (int64_t x = 0; x < out_width; ++x) {
      // The stored pixel that lands at (x, y) of the upright picture.
      int64_t source_x = x, source_y = y;
      switch (orientation) {
        case 2:  // mirrored left-right
          source_x = width - 1 - x;
          break;
        case 3:  // turned 180 degrees
          source_x = width - 1 - x;
          source_y = height - 1 - y;
          break;
        case 4:  // mirrored top-bottom
          source_y = height - 1 - y;
          break;
        case 5:  // transposed
          source_x = y;
          source_y = x;
          break;
        case 6:  // stored turned 90 degrees counter-clockwise: PIL's ROTATE_270
          source_x = y;
          source_y = height - 1 - x;
          break;
        case 7:  // transversed
          source_x = width - 1 - y;
          source_y = height - 1 - x;
          break;
        case 8:  // stored turned 90 degrees clockwise: PIL's ROTATE_90
          source_x = width - 1 - y;
          source_y = x;
          break;
      }
      std::memcpy(&out[(y * out_width + x) * channels], &plane[(source_y * width + source_x) * channels],
                  channels);
    }
  }
  return out;
}

}  // namespace

void apply_orientation(DecodedImage& image, int orientation) {
  if (orientation < 2 || orientation > 8) return;
  const int64_t width = image.rgb.width, height = image.rgb.height;
  image.rgb.pixels = orient_plane(image.rgb.pixels, width, height, 3, orientation);
  if (image.has_alpha()) image.alpha = orient_plane(image.alpha, width, height, 1, orientation);
  if (orientation >= 5) std::swap(image.rgb.width, image.rgb.height);
}

}  // namespace canvas
