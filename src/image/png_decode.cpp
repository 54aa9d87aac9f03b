// PNG through libpng, converted to RGB as PIL converts the mode it opens each PNG in
// (PngImagePlugin's _MODES): 16-bit samples keep their high byte, except 16-bit grey ("I;16"), which
// PIL's I;16 -> RGB conversion clips to 255.
#include <png.h>

#include <csetjmp>
#include <cstring>

#include "image/codecs.h"
#include "util/error.h"

namespace canvas {

namespace {

// libpng reports errors by longjmp; the message waits here until the caller throws it outside libpng.
struct PngReadState {
  std::span<const uint8_t> bytes;
  size_t offset = 0;
  std::string message;
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  state->message = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

void read_from_memory(png_structp png, png_bytep out, size_t length) {
  auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (length > state->bytes.size() - state->offset) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, state->bytes.data() + state->offset, length);
  state->offset += length;
}

int64_t big_endian_32(const uint8_t* bytes) {
  return int64_t{bytes[0]} << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3];
}

struct PngHeader {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
};

// Each stage of libpng calls sits behind its own setjmp, in a frame that holds only plain values, so a
// longjmp skips no destructor.
bool read_header(png_structp png, png_infop info, PngReadState* state, PngHeader* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, state, read_from_memory);
  // The PNG maximum; the pixel limit is ours (check_image_size), with a message of its own.
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_set_chunk_malloc_max(png, 64 << 20);
  png_read_info(png, info);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->bit_depth = png_get_bit_depth(png, info);
  header->color_type = png_get_color_type(png, info);
  return true;
}

// Asks libpng for whole bytes per sample: palette indices unpacked to one byte (we look them up, as PIL
// does), 1/2/4-bit grey scaled to 8 bits (x255, x85, x17, as PIL's "1", "L;2" and "L;4"), and a tRNS
// colour key turned into an alpha channel. 16-bit samples stay 16-bit, big-endian.
bool start_reading(png_structp png, png_infop info, const PngHeader& header, size_t* row_bytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  if (header.color_type == PNG_COLOR_TYPE_PALETTE) {
    png_set_packing(png);
  } else {
    if (header.color_type == PNG_COLOR_TYPE_GRAY && header.bit_depth < 8) {
      png_set_expand_gray_1_2_4_to_8(png);
    }
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool read_pixels(png_structp png, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  return true;
}

// The chunks after the pixels (an eXIf may come there). PIL stops quietly at a broken or missing tail,
// and so do we: the picture is whole.
void read_tail(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return;
  png_read_end(png, info);
}

struct Palette {
  png_colorp colors = nullptr;
  int colors_count = 0;
  png_bytep alphas = nullptr;
  int alphas_count = 0;
};

bool read_palette(png_structp png, png_infop info, Palette* palette) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_get_PLTE(png, info, &palette->colors, &palette->colors_count);
  png_color_16p unused_key = nullptr;
  if (png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_get_tRNS(png, info, &palette->alphas, &palette->alphas_count, &unused_key);
  }
  return true;
}

// Rows of libpng's output (after start_reading's transforms) into PIL's RGB and the alpha plane.
void convert_rows(const std::vector<uint8_t>& raw, size_t row_bytes, const PngHeader& header,
                  const Palette& palette, DecodedImage& image) {
  const int64_t width = image.rgb.width;
  uint8_t* rgb = image.rgb.pixels.data();
  uint8_t* alpha = image.has_alpha() ? image.alpha.data() : nullptr;
  if (header.color_type == PNG_COLOR_TYPE_PALETTE) {
    for (int64_t y = 0; y < image.rgb.height; ++y) {
      const uint8_t* row = raw.data() + y * row_bytes;
      for (int64_t x = 0; x < width; ++x, rgb += 3) {
        const int index = row[x];
        // Indices past the palette are black in PIL (and in libpng).
        const bool known = index < palette.colors_count;
        rgb[0] = known ? palette.colors[index].red : 0;
        rgb[1] = known ? palette.colors[index].green : 0;
        rgb[2] = known ? palette.colors[index].blue : 0;
        if (alpha) *alpha++ = index < palette.alphas_count ? palette.alphas[index] : 255;
      }
    }
    return;
  }
  const bool is_grey = !(header.color_type & PNG_COLOR_MASK_COLOR);
  const bool is_16_bit = header.bit_depth == 16;
  const int color_channels = is_grey ? 1 : 3;
  const int channels = color_channels + (alpha ? 1 : 0);
  const int sample_bytes = is_16_bit ? 2 : 1;
  // PIL opens 16-bit grey without an alpha channel as "I;16"; converting that to RGB clips at 255.
  const bool clips_16_bit_grey = is_16_bit && header.color_type == PNG_COLOR_TYPE_GRAY;
  for (int64_t y = 0; y < image.rgb.height; ++y) {
    const uint8_t* sample = raw.data() + y * row_bytes;
    for (int64_t x = 0; x < width; ++x, rgb += 3, sample += channels * sample_bytes) {
      for (int c = 0; c < 3; ++c) {
        const uint8_t* value = sample + (is_grey ? 0 : c) * sample_bytes;
        rgb[c] = clips_16_bit_grey ? (value[0] != 0 ? 255 : value[1]) : value[0];
      }
      if (alpha) *alpha++ = sample[color_channels * sample_bytes];
    }
  }
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// PIL's info["Raw profile type exif"] (ImageMagick's text chunk): a header of three lines, then the
// EXIF block in hexadecimal, whitespace anywhere. Empty when it is not that.
std::vector<uint8_t> parse_raw_exif_profile(std::string_view text) {
  for (int line = 0; line < 3; ++line) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) return {};
    text.remove_prefix(end + 1);
  }
  std::vector<uint8_t> exif;
  int high_nibble = -1;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    const int digit = hex_digit_value(c);
    if (digit < 0) return {};
    if (high_nibble < 0) {
      high_nibble = digit;
    } else {
      exif.push_back(static_cast<uint8_t>(high_nibble << 4 | digit));
      high_nibble = -1;
    }
  }
  if (high_nibble >= 0) return {};
  return exif;
}

void read_metadata(png_structp png, png_infop info, CodecOutput& output) {
  png_bytep exif = nullptr;
  png_uint_32 exif_length = 0;
  if (png_get_eXIf_1(png, info, &exif_length, &exif) && exif) output.exif.assign(exif, exif + exif_length);
  png_textp chunks = nullptr;
  const int count = png_get_text(png, info, &chunks, nullptr);
  for (int i = 0; i < count; ++i) {
    const size_t length =
        chunks[i].compression >= PNG_ITXT_COMPRESSION_NONE ? chunks[i].itxt_length : chunks[i].text_length;
    const std::string_view text(chunks[i].text, length);
    const std::string_view key(chunks[i].key);
    output.image.rgb.text.push_back({std::string(key), std::string(text)});
    if (key == "XML:com.adobe.xmp") output.xmp = text;
    if (key == "Raw profile type exif" && output.exif.empty()) output.exif = parse_raw_exif_profile(text);
  }
}

}  // namespace

CodecOutput decode_png(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels) {
  // IHDR is the first chunk, at a fixed place: its size is checked before libpng reads it, so an empty
  // or huge picture gets our message rather than libpng's "Invalid IHDR data".
  if (bytes.size() >= 24 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0) {
    check_image_size(big_endian_32(bytes.data() + 16), big_endian_32(bytes.data() + 20), name, max_pixels);
  }
  PngReadState state{bytes, 0, ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  // Frees libpng's structures on every way out, thrown errors included.
  struct ReadStructs {
    png_structp& png;
    png_infop& info;
    ~ReadStructs() {
      if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
  } guard{png, info};
  check(png && info, "out of memory reading " + name);
  auto failure = [&] { return Error("cannot read " + name + " (PNG): " + state.message); };

  PngHeader header;
  if (!read_header(png, info, &state, &header)) throw failure();
  // Again from libpng's reading, so that no file gets past the limit by a header we did not parse above.
  check_image_size(header.width, header.height, name, max_pixels);
  Palette palette;
  if (header.color_type == PNG_COLOR_TYPE_PALETTE && !read_palette(png, info, &palette)) throw failure();
  const bool with_alpha =
      (header.color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
  size_t row_bytes = 0;
  if (!start_reading(png, info, header, &row_bytes)) throw failure();

  std::vector<uint8_t> raw(row_bytes * header.height);
  std::vector<png_bytep> rows(header.height);
  for (png_uint_32 y = 0; y < header.height; ++y) rows[y] = raw.data() + y * row_bytes;
  if (!read_pixels(png, rows.data())) throw failure();
  read_tail(png, info);

  CodecOutput output;
  output.image = allocate_image(ImageFormat::Png, header.width, header.height, with_alpha);
  convert_rows(raw, row_bytes, header, palette, output.image);
  read_metadata(png, info, output);
  return output;
}

}  // namespace canvas
