// Base64 (RFC 4648 section 4, the standard alphabet): pictures travel through the server's JSON as base64
// text, uploads in and previews and images out.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace canvas {

// With '=' padding to a multiple of 4 characters, on one line.
std::string base64_encode(std::span<const uint8_t> bytes);

// The bytes of padded or unpadded base64, or nullopt when `text` is not base64: a character outside the
// standard alphabet (whitespace and line breaks included, and the URL-safe '-' and '_'), padding anywhere
// but at the end or making the length other than a multiple of 4, a length that leaves a lone character,
// or a last character whose unused bits are not zero (so each byte string has one accepted spelling per
// padding style).
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace canvas
