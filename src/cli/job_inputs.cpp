#include "cli/job_inputs.h"

#include <cstdio>
#include <optional>

#include "image/decode.h"
#include "tokenizer/unicode.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/file_type.h"
#include "util/sha256.h"

namespace canvas::cli {

void check_writable_file(const std::filesystem::path& path, const std::string& option) {
  namespace fs = std::filesystem;
  const fs::path folder = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ignored;
  const fs::file_type folder_type = fs::status(folder, ignored).type();
  check(folder_type != fs::file_type::not_found,
        "the folder of " + option + " does not exist: " + folder.string());
  check(folder_type == fs::file_type::directory, "the folder of " + option + " is " +
                                                     file_type_description(folder_type) +
                                                     ", not a folder: " + folder.string());
  const fs::file_type type = fs::status(path, ignored).type();
  check(type == fs::file_type::not_found || type == fs::file_type::regular,
        option + " names " + file_type_description(type) + ", not a file it can replace: " + path.string());
  try {
    AtomicFile probe(path);
  } catch (const Error& error) {
    throw Error(option + ": " + error.what());
  }
}

void check_utf8(std::string_view text, const std::string& what) {
  const std::optional<size_t> offset = unicode::first_invalid_utf8(text);
  if (!offset) return;
  char byte[8];
  std::snprintf(byte, sizeof(byte), "0x%02X",
                static_cast<unsigned>(static_cast<unsigned char>(text[*offset])));
  throw Error(what + " is not valid UTF-8: byte " + byte + " at offset " + std::to_string(*offset));
}

app::InputImage read_input(const std::string& path, const std::string& option) {
  check_utf8(path, "the " + option + " path");
  return {path, read_image(path), sha256_file_hex(path)};
}

}  // namespace canvas::cli
