// What kind of file a path is, for messages such as "'x' is not a regular file (a FIFO)", and the check that
// comes before opening a file to read: opening a FIFO would wait for a writer that never comes.
#pragma once

#include <filesystem>
#include <string>

namespace canvas {

// "a regular file", "a folder", "a FIFO", "a socket", ...
std::string file_type_description(std::filesystem::file_type type);

// Throws canvas::Error when `path` exists and is not a regular file (after symbolic links). A missing file
// passes, for the caller's open to report with the system's reason.
void check_regular_file_or_missing(const std::filesystem::path& path);

}  // namespace canvas
