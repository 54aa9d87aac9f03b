// PNG, JPEG and WebP decoding of uploaded bytes: hostile files give errors, never crashes. The pixel limit
// is lower than the server's so that the fuzzer spends its time on headers and chunks, not on big
// buffers; the check that enforces it is the same.
#include <cstdint>
#include <span>

#include "image/decode.h"
#include "util/error.h"

namespace {
constexpr int64_t kMaxFuzzPixels = int64_t{1} << 20;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const canvas::DecodedImage image =
        canvas::decode_image(std::span<const uint8_t>(data, size), "input", kMaxFuzzPixels);
    // A decoded picture is whole: three bytes a pixel and, when kept, one alpha byte a pixel.
    const auto pixels = static_cast<size_t>(image.rgb.width * image.rgb.height);
    if (pixels == 0 || image.rgb.pixels.size() != 3 * pixels) __builtin_trap();
    if (image.has_alpha() && image.alpha.size() != pixels) __builtin_trap();
  } catch (const canvas::Error&) {
  }
  return 0;
}
