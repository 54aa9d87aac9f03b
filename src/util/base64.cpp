#include "util/base64.h"

#include <algorithm>
#include <cstdint>

namespace canvas {

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t offset = 0; offset < bytes.size(); offset += 3) {
    const size_t count = std::min<size_t>(3, bytes.size() - offset);
    uint32_t group = 0;
    for (size_t i = 0; i < 3; ++i)
      group = (group << 8) | (i < count ? static_cast<uint8_t>(bytes[offset + i]) : 0u);
    for (size_t i = 0; i < 4; ++i) text += i <= count ? kAlphabet[(group >> (18 - 6 * i)) & 63] : '=';
  }
  return text;
}

}  // namespace canvas
