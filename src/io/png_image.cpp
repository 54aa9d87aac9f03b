#include "io/png_image.h"

#include <png.h>

#include <csetjmp>
#include <new>

#include "util/atomic_file.h"
#include "util/error.h"

namespace canvas {

namespace {

// libpng reports errors by longjmp; the message is kept here so the caller can throw a canvas::Error
// after the jump, outside libpng's frames.
struct PngErrorState {
  std::string message;
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  state->message = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

// libpng hands the encoded bytes here, a piece at a time. A vector that cannot grow throws bad_alloc, which
// must not cross libpng's C frames: it becomes a libpng error, raised outside the handler.
void append_to_bytes(png_structp png, png_bytep data, png_size_t length) {
  auto* bytes = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  bool appended = true;
  try {
    bytes->insert(bytes->end(), data, data + length);
  } catch (const std::bad_alloc&) {
    appended = false;
  }
  if (!appended) png_error(png, "out of memory");
}

void flush_nothing(png_structp) {}

// The libpng calls of one image, each behind its own setjmp: the frames a longjmp crosses hold only
// plain pointers, so no C++ object is skipped or clobbered.
bool encode_with_libpng(png_structp png, png_infop info, std::vector<uint8_t>* bytes, const RgbImage& image,
                        png_text* chunks, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, bytes, append_to_bytes, flush_nothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!image.text.empty()) png_set_text(png, info, chunks, static_cast<int>(image.text.size()));
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const RgbImage& image) {
  check(image.width > 0 && image.height > 0 && image.width <= 65535 && image.height <= 65535,
        "cannot write a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " PNG");
  check(
      static_cast<int64_t>(image.pixels.size()) == image.width * image.height * 3,
      "PNG pixel buffer does not match " + std::to_string(image.width) + "x" + std::to_string(image.height));

  std::vector<png_text> chunks(image.text.size());
  for (size_t i = 0; i < image.text.size(); ++i) {
    chunks[i] = {};
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(image.text[i].key.c_str());
    chunks[i].text = const_cast<char*>(image.text[i].text.c_str());
    chunks[i].itxt_length = image.text[i].text.size();
  }
  std::vector<png_bytep> rows(static_cast<size_t>(image.height));
  for (int64_t y = 0; y < image.height; ++y) {
    rows[y] = const_cast<png_bytep>(image.pixels.data() + y * image.width * 3);
  }
  std::vector<uint8_t> bytes;
  PngErrorState state;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  const bool encoded =
      png && info && encode_with_libpng(png, info, &bytes, image, chunks.data(), rows.data());
  png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
  if (!encoded)
    throw Error("cannot encode a PNG: " +
                (state.message.empty() ? "libpng could not be set up" : state.message));
  return bytes;
}

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  const std::vector<uint8_t> bytes = encode_png(image);
  AtomicFile file(path);
  // A failed write is reported by commit() with the system's reason.
  file.append(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace canvas
