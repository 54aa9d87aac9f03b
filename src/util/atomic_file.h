// Whole-file writes that readers (other processes included) see complete or not at all: the bytes go to a
// temporary file beside the destination, which is renamed into place once complete. A process that must
// stop at once (a second Ctrl-C) removes the temporary files it is writing with
// remove_partial_files_in_progress(), so no half-written file is left behind.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>
#include <vector>

namespace canvas {

class AtomicFile {
 public:
  // Creates the temporary file ".<name>.partial-<pid>-<n>" beside `path`. Throws canvas::Error naming
  // `path` and the system's reason when it cannot (a missing or read-only folder, /proc, ...).
  explicit AtomicFile(std::filesystem::path path);
  // Removes the temporary file unless commit() renamed it into place.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Appends bytes. Returns false once a write has failed, keeping the system's reason for commit(); never
  // throws, so a C library's write callback (libpng's) may call it.
  bool append(const void* data, size_t size) noexcept;
  bool failed() const { return error_ != 0; }
  // Writes out what is buffered, flushes it to the disk and renames the file into place. Throws
  // canvas::Error naming `path` and the system's reason (e.g. "No space left on device") when that or an
  // earlier append failed, leaving any previous file at `path` as it was.
  void commit();

 private:
  bool write_through(const char* data, size_t size) noexcept;

  std::filesystem::path path_;
  std::filesystem::path temporary_;
  int descriptor_ = -1;
  int error_ = 0;          // errno of the first failed write
  int registration_ = -1;  // the slot naming the temporary file to remove_partial_files_in_progress()
  bool committed_ = false;
  std::vector<char> buffer_;
};

// Writes `text` to `path` through an AtomicFile. Throws canvas::Error as AtomicFile does.
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

// Unlinks the temporary files of every AtomicFile being written now. Async-signal-safe: for a signal
// handler that ends the process at once.
void remove_partial_files_in_progress() noexcept;

}  // namespace canvas
