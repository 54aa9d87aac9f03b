#include "util/file_type.h"

#include "util/error.h"

namespace canvas {

std::string file_type_description(std::filesystem::file_type type) {
  using std::filesystem::file_type;
  switch (type) {
    case file_type::regular:
      return "a regular file";
    case file_type::directory:
      return "a folder";
    case file_type::symlink:
      return "a symbolic link";
    case file_type::block:
      return "a block device";
    case file_type::character:
      return "a character device";
    case file_type::fifo:
      return "a FIFO";
    case file_type::socket:
      return "a socket";
    case file_type::not_found:
      return "missing";
    default:
      return "an unknown kind of file";
  }
}

void check_regular_file_or_missing(const std::filesystem::path& path) {
  std::error_code ignored;
  const std::filesystem::file_type type = std::filesystem::status(path, ignored).type();
  check(type == std::filesystem::file_type::regular || type == std::filesystem::file_type::not_found,
        '\'' + path.string() + "' is not a regular file (" + file_type_description(type) + ")");
}

}  // namespace canvas
