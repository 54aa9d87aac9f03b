// PNG files: 8-bit RGB images with text chunks (the generation settings travel inside the image).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace canvas {

struct PngTextChunk {
  std::string key;
  std::string text;  // UTF-8; stored as iTXt so any text survives
};

struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;  // row-major RGB, 3 bytes per pixel
  std::vector<PngTextChunk> text;
};

// The PNG file of `image` in memory, its text chunks included (for answers sent over the network). Throws
// canvas::Error for an empty or oversized image, or pixels that do not match its size.
std::vector<uint8_t> encode_png(const RgbImage& image);

// encode_png's bytes written through an AtomicFile (util/atomic_file.h), so a failed write never leaves a
// truncated image or destroys an existing file. Throws canvas::Error naming the file and the system's reason
// on failure.
void write_png(const std::filesystem::path& path, const RgbImage& image);

// Reading images (PNG among them, text chunks included) is src/image's: read_image in image/decode.h.

}  // namespace canvas
