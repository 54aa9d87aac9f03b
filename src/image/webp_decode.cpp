// WebP through libwebp's animation decoder, as PIL reads every WebP file (_webp.c): default options
// (fancy upsampling, RGBA out, not premultiplied), the first frame of an animation, EXIF and XMP from the
// container's chunks.
#include <webp/decode.h>
#include <webp/demux.h>

#include <cstring>
#include <memory>

#include "image/codecs.h"
#include "util/error.h"

namespace canvas {

namespace {

std::string status_reason(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_NOT_ENOUGH_DATA:
      return "the file ends early (truncated)";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
      return "it uses a feature libwebp does not support";
    case VP8_STATUS_OUT_OF_MEMORY:
      return "out of memory";
    default:
      return "the data is corrupt";
  }
}

struct AnimDecoderDeleter {
  void operator()(WebPAnimDecoder* decoder) const { WebPAnimDecoderDelete(decoder); }
};

std::vector<uint8_t> chunk_bytes(const WebPDemuxer* demuxer, const char fourcc[4]) {
  WebPChunkIterator chunk;
  std::vector<uint8_t> bytes;
  if (WebPDemuxGetChunk(demuxer, fourcc, 1, &chunk)) {
    bytes.assign(chunk.chunk.bytes, chunk.chunk.bytes + chunk.chunk.size);
    WebPDemuxReleaseChunkIterator(&chunk);
  }
  return bytes;
}

}  // namespace

CodecOutput decode_webp(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels) {
  auto failure = [&](const std::string& reason) {
    return Error("cannot read " + name + " (WebP): " + reason);
  };
  // The RIFF header states the length of what follows it (little-endian): a shorter file was cut.
  uint64_t riff_payload = 0;
  for (int i = 7; i >= 4 && bytes.size() >= 8; --i) riff_payload = riff_payload << 8 | bytes[i];
  if (bytes.size() < 12 || bytes.size() - 8 < riff_payload) {
    throw failure(status_reason(VP8_STATUS_NOT_ENOUGH_DATA));
  }

  // The header alone gives the size (the canvas of an animation): checked before anything is decoded.
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(bytes.data(), bytes.size(), &features);
  if (status != VP8_STATUS_OK) throw failure(status_reason(status));
  check_image_size(features.width, features.height, name, max_pixels);

  WebPAnimDecoderOptions options;
  WebPAnimDecoderOptionsInit(&options);
  options.color_mode = MODE_RGBA;
  const WebPData data{bytes.data(), bytes.size()};
  std::unique_ptr<WebPAnimDecoder, AnimDecoderDeleter> decoder(WebPAnimDecoderNew(&data, &options));
  if (!decoder) throw failure(status_reason(VP8_STATUS_BITSTREAM_ERROR));
  WebPAnimInfo info;
  // The canvas is the size checked above; a file that says otherwise to the demuxer is refused.
  if (!WebPAnimDecoderGetInfo(decoder.get(), &info) ||
      static_cast<int>(info.canvas_width) != features.width ||
      static_cast<int>(info.canvas_height) != features.height) {
    throw failure(status_reason(VP8_STATUS_BITSTREAM_ERROR));
  }
  uint8_t* frame = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &frame, &timestamp)) {
    throw failure(status_reason(VP8_STATUS_BITSTREAM_ERROR));
  }

  CodecOutput output;
  const int64_t width = info.canvas_width, height = info.canvas_height;
  // PIL opens the file as RGBA exactly when WebPGetFeatures reports alpha.
  output.image = allocate_image(ImageFormat::WebP, width, height, features.has_alpha);
  const int64_t count = width * height;
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(&output.image.rgb.pixels[i * 3], frame + i * 4, 3);
    if (features.has_alpha) output.image.alpha[i] = frame[i * 4 + 3];
  }
  const WebPDemuxer* demuxer = WebPAnimDecoderGetDemuxer(decoder.get());
  output.exif = chunk_bytes(demuxer, "EXIF");
  const std::vector<uint8_t> xmp = chunk_bytes(demuxer, "XMP ");
  output.xmp.assign(xmp.begin(), xmp.end());
  return output;
}

}  // namespace canvas
