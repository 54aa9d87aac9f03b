// Base64 (RFC 4648, standard alphabet, padded), as the HTTP APIs carry pictures inside JSON.
#pragma once

#include <string>
#include <string_view>

namespace canvas {

std::string base64_encode(std::string_view bytes);

}  // namespace canvas
