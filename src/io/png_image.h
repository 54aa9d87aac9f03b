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

// Writes through an AtomicFile (util/atomic_file.h), so a failed write never leaves a truncated image or
// destroys an existing file. Throws canvas::Error naming the file and the system's reason on failure.
void write_png(const std::filesystem::path& path, const RgbImage& image);

// Reads any PNG (palette, gray, alpha and 16-bit are converted to 8-bit RGB; alpha is dropped).
// Images with more than `max_pixels` pixels or a corrupt stream give canvas::Error, never a crash.
RgbImage read_png(const std::filesystem::path& path, int64_t max_pixels = int64_t{1} << 26);

}  // namespace canvas
