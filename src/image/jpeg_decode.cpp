// JPEG through libjpeg-turbo's libjpeg API with the settings PIL uses (JpegDecode.c): the default
// islow DCT and fancy upsampling, RGB out of the library's colour conversion, CMYK read as Adobe's
// inverted CMYK and turned into RGB by PIL's formula.
#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h uses FILE and size_t without declaring them: it must come after <cstdio>.
#include <jpeglib.h>
// jerror.h needs jpeglib.h.
#include <jerror.h>

#include "image/codecs.h"
#include "util/error.h"

namespace canvas {

namespace {

// libjpeg reports errors through error_exit, which must not return: it jumps back to the stage that
// called the library, and the message waits here until the caller throws it outside libjpeg.
struct JpegDecoder {
  jpeg_decompress_struct info{};
  jpeg_error_mgr errors{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
};

JpegDecoder* decoder_of(j_common_ptr info) {
  return static_cast<JpegDecoder*>(info->client_data);
}

[[noreturn]] void on_jpeg_error(j_common_ptr info) {
  info->err->format_message(info, decoder_of(info)->message);
  std::longjmp(decoder_of(info)->jump, 1);
}

// Warnings (damaged but decodable data) pass silently, as in PIL, except the one that says the data
// ran out: PIL refuses a truncated JPEG ("image file is truncated") and so do we, though libjpeg would
// pad it with grey.
void on_jpeg_message(j_common_ptr info, int level) {
  if (level == -1 && info->err->msg_code == JWRN_JPEG_EOF) {
    std::snprintf(decoder_of(info)->message, JMSG_LENGTH_MAX, "the file ends early (truncated)");
    std::longjmp(decoder_of(info)->jump, 1);
  }
}

// Each stage of libjpeg calls sits behind its own setjmp, in a frame that holds only plain values, so a
// longjmp skips no destructor.
bool create(JpegDecoder* decoder) {
  if (setjmp(decoder->jump)) return false;
  jpeg_create_decompress(&decoder->info);
  return true;
}

bool read_header(JpegDecoder* decoder, std::span<const uint8_t> bytes) {
  if (setjmp(decoder->jump)) return false;
  jpeg_mem_src(&decoder->info, bytes.data(), bytes.size());
  jpeg_save_markers(&decoder->info, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&decoder->info, TRUE);
  return true;
}

bool decompress(JpegDecoder* decoder, uint8_t* pixels, size_t row_bytes) {
  if (setjmp(decoder->jump)) return false;
  jpeg_start_decompress(&decoder->info);
  while (decoder->info.output_scanline < decoder->info.output_height) {
    JSAMPROW row = pixels + decoder->info.output_scanline * row_bytes;
    jpeg_read_scanlines(&decoder->info, &row, 1);
  }
  jpeg_finish_decompress(&decoder->info);
  return true;
}

bool starts_with(const jpeg_saved_marker_ptr marker, std::string_view prefix) {
  return marker->data_length >= prefix.size() && std::memcmp(marker->data, prefix.data(), prefix.size()) == 0;
}

// The APP1 markers before the first scan, read as PIL's JpegImagePlugin.APP reads them: EXIF from the
// first "Exif\0\0" marker with the data of later ones appended, XMP from the last XMP marker.
void read_metadata(const jpeg_decompress_struct& info, CodecOutput& output) {
  static constexpr std::string_view kExif("Exif\0\0", 6);
  static constexpr std::string_view kXmp("http://ns.adobe.com/xap/1.0/\0", 29);
  for (jpeg_saved_marker_ptr marker = info.marker_list; marker; marker = marker->next) {
    if (marker->marker != JPEG_APP0 + 1) continue;
    const uint8_t* end = marker->data + marker->data_length;
    if (starts_with(marker, kExif)) {
      const uint8_t* begin = output.exif.empty() ? marker->data : marker->data + kExif.size();
      output.exif.insert(output.exif.end(), begin, end);
    } else if (starts_with(marker, kXmp)) {
      output.xmp.assign(reinterpret_cast<const char*>(marker->data) + kXmp.size(),
                        reinterpret_cast<const char*>(end));
    }
  }
}

// PIL's cmyk2rgb after its "CMYK;I" unpacking (which inverts the stored samples): with ink c and black k,
// red = (255 - k) - c * (255 - k) / 255, rounded the way PIL's MULDIV255 rounds.
uint8_t cmyk_channel(uint8_t stored_ink, uint8_t stored_black) {
  const int ink = 255 - stored_ink;
  const int not_black = stored_black;  // 255 - (255 - stored_black)
  const int product = ink * not_black + 128;
  const int value = not_black - (((product >> 8) + product) >> 8);
  return static_cast<uint8_t>(value < 0 ? 0 : value > 255 ? 255 : value);
}

}  // namespace

CodecOutput decode_jpeg(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels) {
  JpegDecoder decoder;
  decoder.info.err = jpeg_std_error(&decoder.errors);
  decoder.errors.error_exit = on_jpeg_error;
  decoder.errors.emit_message = on_jpeg_message;
  decoder.info.client_data = &decoder;  // kept by jpeg_create_decompress
  // Frees libjpeg's memory on every way out, thrown errors included (also after a failed creation).
  struct Destroy {
    jpeg_decompress_struct& info;
    ~Destroy() { jpeg_destroy_decompress(&info); }
  } guard{decoder.info};
  auto failure = [&] { return Error("cannot read " + name + " (JPEG): " + decoder.message); };

  if (!create(&decoder) || !read_header(&decoder, bytes)) throw failure();
  const int64_t width = decoder.info.image_width, height = decoder.info.image_height;
  check_image_size(width, height, name, max_pixels);
  const int components = decoder.info.num_components;
  switch (components) {
    case 1:
      decoder.info.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      decoder.info.out_color_space = JCS_RGB;
      break;
    case 4:
      decoder.info.out_color_space = JCS_CMYK;
      break;
    default:
      throw Error("cannot read " + name + ": a JPEG with " + std::to_string(components) +
                  " colour components is not a greyscale, RGB or CMYK picture");
  }

  const size_t row_bytes = static_cast<size_t>(width) * components;
  std::vector<uint8_t> samples(row_bytes * height);
  // Before decompressing: jpeg_finish_decompress frees the saved markers.
  CodecOutput output;
  read_metadata(decoder.info, output);
  if (!decompress(&decoder, samples.data(), row_bytes)) throw failure();

  output.image = allocate_image(ImageFormat::Jpeg, width, height, false);
  uint8_t* rgb = output.image.rgb.pixels.data();
  const int64_t count = width * height;
  for (int64_t i = 0; i < count; ++i, rgb += 3) {
    const uint8_t* sample = samples.data() + i * components;
    for (int c = 0; c < 3; ++c) {
      rgb[c] = components == 1 ? sample[0] : components == 3 ? sample[c] : cmyk_channel(sample[c], sample[3]);
    }
  }
  return output;
}

}  // namespace canvas
