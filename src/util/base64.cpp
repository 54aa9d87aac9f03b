#include "util/base64.h"

#include <array>

namespace canvas {

namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr uint8_t kNotBase64 = 0xFF;

// Each character's 6-bit value, or kNotBase64.
constexpr std::array<uint8_t, 256> decoding_table() {
  std::array<uint8_t, 256> table{};
  table.fill(kNotBase64);
  for (size_t i = 0; i < kAlphabet.size(); ++i)
    table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
  return table;
}
constexpr std::array<uint8_t, 256> kDecoding = decoding_table();

}  // namespace

std::string base64_encode(std::span<const uint8_t> bytes) {
  std::string text;
  text.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t group = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) text += kAlphabet[(group >> shift) & 63];
  }
  const size_t left = bytes.size() - i;
  if (left > 0) {
    const uint32_t group = uint32_t{bytes[i]} << 16 | (left == 2 ? uint32_t{bytes[i + 1]} << 8 : 0);
    text += kAlphabet[(group >> 18) & 63];
    text += kAlphabet[(group >> 12) & 63];
    text += left == 2 ? kAlphabet[(group >> 6) & 63] : '=';
    text += '=';
  }
  return text;
}

std::optional<std::vector<uint8_t>> base64_decode(std::string_view text) {
  // Padding only completes the last group of 4.
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  if (padding > 0 && text.size() % 4 != 0) return std::nullopt;
  const std::string_view data = text.substr(0, text.size() - padding);
  // A last group of 1 character holds too few bits for a byte.
  if (data.size() % 4 == 1) return std::nullopt;

  std::vector<uint8_t> bytes;
  bytes.reserve(data.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int bit_count = 0;
  for (char character : data) {
    const uint8_t value = kDecoding[static_cast<uint8_t>(character)];
    if (value == kNotBase64) return std::nullopt;
    bits = (bits << 6 | value) & 0xFFFFFF;
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      bytes.push_back(static_cast<uint8_t>(bits >> bit_count));
    }
  }
  // The bits past the last byte (2 or 4 of them) must be zero.
  if ((bits & ((1u << bit_count) - 1)) != 0) return std::nullopt;
  return bytes;
}

}  // namespace canvas
