#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "util/error.h"

namespace canvas {

namespace {

// The temporary files being written, for remove_partial_files_in_progress(). A signal handler may read a
// slot while another thread rewrites it, so each slot is a sequence lock over relaxed atomic characters:
// the handler unlinks only a path it read between two equal, even sequence numbers, and never waits.
struct PartialPathSlot {
  std::atomic<bool> claimed{false};
  std::atomic<unsigned> sequence{0};               // odd while the path is being rewritten
  std::array<std::atomic<char>, PATH_MAX> path{};  // "" when the slot names no file
};
static_assert(std::atomic<char>::is_always_lock_free && std::atomic<unsigned>::is_always_lock_free &&
              std::atomic<bool>::is_always_lock_free);

// More files than any job writes at once; beyond them a write goes ahead without the cleanup on a signal.
constexpr int kSlots = 64;
std::array<PartialPathSlot, kSlots> partial_paths;
std::atomic<unsigned> next_temporary_number{0};
constexpr size_t kBufferBytes = 64 * 1024;

void store_path(PartialPathSlot& slot, std::string_view path) {
  slot.sequence.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  for (size_t i = 0; i < path.size(); ++i) slot.path[i].store(path[i], std::memory_order_relaxed);
  slot.path[path.size()].store('\0', std::memory_order_relaxed);
  slot.sequence.fetch_add(1, std::memory_order_release);
}

// The slot now naming `path`, or -1 when none is free or the path could not be opened anyway.
int register_partial_path(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!partial_paths[i].claimed.compare_exchange_strong(expected, true, std::memory_order_acquire))
      continue;
    store_path(partial_paths[i], path);
    return i;
  }
  return -1;
}

void unregister_partial_path(int slot) {
  if (slot < 0) return;
  store_path(partial_paths[slot], "");
  partial_paths[slot].claimed.store(false, std::memory_order_release);
}

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
  std::string name = ".";
  name += path_.filename().string();
  name += ".partial-";
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(next_temporary_number.fetch_add(1));
  temporary_ = path_.parent_path() / name;
  // Registered before it exists: a signal in between unlinks a name not yet created, which is harmless.
  registration_ = register_partial_path(temporary_.string());
  descriptor_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (descriptor_ < 0) {
    const int error = errno;
    unregister_partial_path(registration_);
    throw Error("cannot write " + path_.string() + ": cannot create " + temporary_.string() + ": " +
                std::strerror(error));
  }
  buffer_.reserve(kBufferBytes);
}

AtomicFile::~AtomicFile() {
  if (descriptor_ >= 0) ::close(descriptor_);
  if (!committed_) ::unlink(temporary_.c_str());
  unregister_partial_path(registration_);
}

bool AtomicFile::write_through(const char* data, size_t size) noexcept {
  while (size > 0 && error_ == 0) {
    const ssize_t written = ::write(descriptor_, data, size);
    if (written < 0) {
      if (errno != EINTR) error_ = errno;
      continue;
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return error_ == 0;
}

bool AtomicFile::append(const void* data, size_t size) noexcept {
  if (error_ != 0) return false;
  if (buffer_.size() + size > kBufferBytes) {
    if (!write_through(buffer_.data(), buffer_.size())) return false;
    buffer_.clear();
  }
  if (size >= kBufferBytes) return write_through(static_cast<const char*>(data), size);
  const char* bytes = static_cast<const char*>(data);
  buffer_.insert(buffer_.end(), bytes, bytes + size);
  return true;
}

void AtomicFile::commit() {
  if (write_through(buffer_.data(), buffer_.size())) {
    buffer_.clear();
    // A full disk may only show when the data reaches it.
    if (::fsync(descriptor_) != 0) error_ = errno;
  }
  if (::close(descriptor_) != 0 && error_ == 0) error_ = errno;
  descriptor_ = -1;
  if (error_ == 0 && ::rename(temporary_.c_str(), path_.c_str()) != 0) error_ = errno;
  if (error_ != 0) throw Error("cannot write " + path_.string() + ": " + std::strerror(error_));
  committed_ = true;
}

void write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  AtomicFile file(path);
  file.append(text.data(), text.size());
  file.commit();
}

void remove_partial_files_in_progress() noexcept {
  for (PartialPathSlot& slot : partial_paths) {
    std::array<char, PATH_MAX> path;
    const unsigned before = slot.sequence.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    size_t length = 0;
    while (length + 1 < path.size() &&
           (path[length] = slot.path[length].load(std::memory_order_relaxed)) != '\0')
      ++length;
    path[length] = '\0';
    std::atomic_thread_fence(std::memory_order_acquire);
    if (length == 0 || slot.sequence.load(std::memory_order_relaxed) != before) continue;
    ::unlink(path.data());
  }
}

}  // namespace canvas
