// The web UI's files (web/ in the source tree), built into the binary by cmake/embed_web.cmake so that
// `canvas serve` serves the page at / wherever it is installed.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace canvas::app {

struct WebAsset {
  std::string_view name;  // the file's name in web/: "index.html", "api.js"
  std::string_view content_type;
  std::string_view bytes;
};

std::span<const WebAsset> web_assets();

// The asset a GET of `path` asks for: "/" is index.html, "/NAME" the file NAME; none for any other path.
std::optional<WebAsset> web_asset_for(std::string_view path);

}  // namespace canvas::app
