// JSON files that only ever save work (what the engine measured or learned, kept for the next run): a
// missing, unreadable or malformed file reads as empty, and a write that fails is reported, not thrown.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

namespace canvas {

// The file's top-level object, or an empty object.
nlohmann::json read_json_cache(const std::filesystem::path& file);

// Writes `cache` atomically (util/atomic_file.h), creating the folder; false when that fails.
bool write_json_cache(const std::filesystem::path& file, const nlohmann::json& cache);

}  // namespace canvas
