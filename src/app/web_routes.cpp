// The web UI: its files (app/web_assets.h) at / and /NAME.
#include "app/http_routes.h"
#include "app/web_assets.h"

namespace canvas::app {

std::optional<WebAsset> web_asset_for(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  const std::string_view name = path == "/" ? std::string_view("index.html") : path.substr(1);
  for (const WebAsset& asset : web_assets())
    if (asset.name == name) return asset;
  return std::nullopt;
}

void add_web_routes(httplib::Server& server) {
  for (const WebAsset& asset : web_assets()) {
    const auto serve = [asset](const httplib::Request&, httplib::Response& response) {
      response.set_header("Cache-Control", "no-cache");
      response.set_content(asset.bytes.data(), asset.bytes.size(), std::string(asset.content_type));
    };
    // The route is a regular expression: the name's dots are escaped.
    std::string pattern = "/";
    for (const char letter : asset.name) {
      if (letter == '.') pattern += '\\';
      pattern += letter;
    }
    server.Get(pattern, serve);
    if (asset.name == "index.html") server.Get("/", serve);
  }
}

}  // namespace canvas::app
