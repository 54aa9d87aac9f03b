#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "util/error.h"
#include "util/file_type.h"

namespace canvas {

namespace {

[[noreturn]] void throw_system_error(const std::filesystem::path& path, const std::string& action,
                                     int error) {
  throw Error("cannot " + action + " '" + path.string() + "': " + std::strerror(error));
}

// Closes the descriptor on every path out of open(); the mapping outlives it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int descriptor) : descriptor_(descriptor) {}
  ~FileDescriptor() { ::close(descriptor_); }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return descriptor_; }

 private:
  int descriptor_;
};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
  // Opening a FIFO waits for a writer, so the kind of file is checked first; O_NONBLOCK keeps a FIFO put
  // in its place meanwhile from blocking too (it changes nothing for a regular file).
  check_regular_file_or_missing(path);
  int descriptor = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (descriptor < 0) throw_system_error(path, "open", errno);
  FileDescriptor file(descriptor);

  struct stat status {};
  if (::fstat(file.get(), &status) != 0) throw_system_error(path, "stat", errno);
  if (!S_ISREG(status.st_mode)) throw Error("'" + path.string() + "' is not a regular file");

  const auto size = static_cast<int64_t>(status.st_size);
  const std::byte* data = nullptr;
  if (size > 0) {
    // Shared, not private: the pages are then the page cache's own, which a GPU driver can lock in place
    // (memory/host_page_locks.h) for direct copies; locking a private mapping makes the kernel break
    // copy-on-write page by page. Read-only either way, so nothing is ever written back.
    void* mapping = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, file.get(), 0);
    if (mapping == MAP_FAILED) throw_system_error(path, "map", errno);
    data = static_cast<const std::byte*>(mapping);
  }
  return std::shared_ptr<const MappedFile>(new MappedFile(path, data, size));
}

MappedFile::MappedFile(std::filesystem::path path, const std::byte* data, int64_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), static_cast<size_t>(size_));
}

}  // namespace canvas
