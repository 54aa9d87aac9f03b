// Checks of a job's inputs that need no model, made before loading one so that a mistake costs seconds, not
// a whole job whose image is then lost at the end.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "app/job_spec.h"

namespace canvas::cli {

// Refuses a file the job could not write at its end: a missing folder, a folder or other non-regular file in
// its place, or a location that cannot be written (a read-only folder, /proc, ...), found by creating and
// removing a temporary file beside it. `option` names the file in the message, e.g. "--output".
void check_writable_file(const std::filesystem::path& path, const std::string& option);

// Refuses text that is not valid UTF-8, which the image's metadata could not record. `what` names it in the
// message, e.g. "the prompt".
void check_utf8(std::string_view text, const std::string& what);

// Reads a picture before any model loads (a bad file costs a moment, not a load), with its SHA-256 for the
// metadata. `option` names it in messages, e.g. "--image".
app::InputImage read_input(const std::string& path, const std::string& option);

}  // namespace canvas::cli
