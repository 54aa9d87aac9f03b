// Helpers the fuzz targets share: parsers that read files get the fuzzer's bytes through a file of this
// process's own, rewritten for every input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace canvas::fuzz {

// A folder of this process's own under the temporary directory (removed by the next run's start, as
// libFuzzer ends processes without running destructors).
inline const std::filesystem::path& scratch_folder() {
  static const std::filesystem::path folder = [] {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("canvas-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
    return path;
  }();
  return folder;
}

// Writes the input to `name` in the scratch folder and returns its path.
inline std::filesystem::path write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::filesystem::path path = scratch_folder() / name;
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace canvas::fuzz
