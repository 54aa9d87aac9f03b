#include "image/decode.h"

#include <cstring>
#include <optional>
#include <string_view>

#include "image/codecs.h"
#include "image/orientation.h"
#include "io/mapped_file.h"
#include "util/error.h"

namespace canvas {

namespace {

bool starts_with(std::span<const uint8_t> bytes, std::string_view prefix, size_t offset = 0) {
  return bytes.size() >= offset + prefix.size() &&
         std::memcmp(bytes.data() + offset, prefix.data(), prefix.size()) == 0;
}

// The first bytes decide, as they do for PIL: a PNG named .jpg is still a PNG.
std::optional<ImageFormat> sniff_format(std::span<const uint8_t> bytes) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return ImageFormat::Png;
  if (starts_with(bytes, "\xff\xd8\xff")) return ImageFormat::Jpeg;
  if (starts_with(bytes, "RIFF") && starts_with(bytes, "WEBP", 8)) return ImageFormat::WebP;
  return std::nullopt;
}

// PIL's Image.getexif(): the EXIF block's Orientation, else the XMP packet's.
int recorded_orientation(const CodecOutput& decoded) {
  if (std::optional<int> orientation = exif_orientation(decoded.exif)) return *orientation;
  return xmp_orientation(decoded.xmp).value_or(1);
}

}  // namespace

std::string_view image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::Png:
      return "PNG";
    case ImageFormat::Jpeg:
      return "JPEG";
    case ImageFormat::WebP:
      return "WebP";
  }
  return "unknown";
}

void check_image_size(int64_t width, int64_t height, const std::string& name, int64_t max_pixels) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  check(width > 0 && height > 0, name + " has no pixels: its header says " + size);
  check(width <= max_pixels / height, name + " is " + size + " pixels, more than the " +
                                          std::to_string(max_pixels) + " an input image may have");
}

DecodedImage allocate_image(ImageFormat format, int64_t width, int64_t height, bool with_alpha) {
  DecodedImage image;
  image.format = format;
  image.rgb.width = width;
  image.rgb.height = height;
  image.rgb.pixels.resize(static_cast<size_t>(width * height * 3));
  if (with_alpha) image.alpha.resize(static_cast<size_t>(width * height));
  return image;
}

DecodedImage decode_image(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels) {
  check(!bytes.empty(), name + " is empty");
  const std::optional<ImageFormat> format = sniff_format(bytes);
  check(format.has_value(), name + " is not a PNG, JPEG or WebP image");
  CodecOutput decoded;
  switch (*format) {
    case ImageFormat::Png:
      decoded = decode_png(bytes, name, max_pixels);
      break;
    case ImageFormat::Jpeg:
      decoded = decode_jpeg(bytes, name, max_pixels);
      break;
    case ImageFormat::WebP:
      decoded = decode_webp(bytes, name, max_pixels);
      break;
  }
  apply_orientation(decoded.image, recorded_orientation(decoded));
  return std::move(decoded.image);
}

DecodedImage read_image(const std::filesystem::path& path, int64_t max_pixels) {
  std::error_code error;
  check(!std::filesystem::is_directory(path, error), path.string() + " is a folder, not an image file");
  const std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const auto* data = reinterpret_cast<const uint8_t*>(file->data());
  return decode_image({data, static_cast<size_t>(file->size())}, path.string(), max_pixels);
}

}  // namespace canvas
