#include "util/json_cache.h"

#include <fstream>
#include <system_error>

#include "util/atomic_file.h"
#include "util/error.h"

namespace canvas {

nlohmann::json read_json_cache(const std::filesystem::path& file) {
  std::ifstream stream(file);
  if (!stream) return nlohmann::json::object();
  nlohmann::json cache = nlohmann::json::parse(stream, nullptr, /*allow_exceptions=*/false);
  return cache.is_object() ? cache : nlohmann::json::object();
}

bool write_json_cache(const std::filesystem::path& file, const nlohmann::json& cache) {
  std::error_code ignored;
  std::filesystem::create_directories(file.parent_path(), ignored);
  try {
    write_file_atomically(file, cache.dump(2) + "\n");
  } catch (const Error&) {
    return false;
  }
  return true;
}

}  // namespace canvas
