// Reading PNG, JPEG and WebP pictures the way the reference pipelines read them (see DecodedImage).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "image/image.h"

namespace canvas {

// The format comes from the file's first bytes, never from its name. Every failure is a canvas::Error
// naming the file and saying why: missing or unreadable, a folder, empty, not a PNG, JPEG or WebP image,
// truncated or corrupt, zero-sized, or more than `max_pixels` pixels (refused from the header, before any
// pixel buffer is allocated). Hostile files give errors, never crashes.
DecodedImage read_image(const std::filesystem::path& path, int64_t max_pixels = kMaxImagePixels);

// The same for bytes already in memory (e.g. an upload); `name` stands for the file in messages.
DecodedImage decode_image(std::span<const uint8_t> bytes, const std::string& name,
                          int64_t max_pixels = kMaxImagePixels);

}  // namespace canvas
