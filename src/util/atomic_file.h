// Whole-file writes that readers (other processes included) see complete or not at all.
#pragma once

#include <filesystem>
#include <string_view>

namespace canvas {

// Writes `text` beside `path` under a temporary name and renames it into place. Throws canvas::Error
// naming the file when that fails, leaving any previous file as it was.
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

}  // namespace canvas
