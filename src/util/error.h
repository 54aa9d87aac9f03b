// The project's error types. Every failure a user can cause (bad files, bad sizes, bad requests)
// surfaces as a canvas::Error with a message that says what and why.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace canvas {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocation that could not be satisfied: a real out-of-memory from the system or the driver,
// or a request past the allocator's budget. Both take this one path so recovery code sees one type.
class OutOfMemoryError : public Error {
 public:
  OutOfMemoryError(const std::string& message, int64_t requested_bytes, int64_t in_use_bytes,
                   int64_t limit_bytes, bool injected = false)
      : Error(message),
        requested_bytes_(requested_bytes),
        in_use_bytes_(in_use_bytes),
        limit_bytes_(limit_bytes),
        injected_(injected) {}
  int64_t requested_bytes() const { return requested_bytes_; }
  int64_t in_use_bytes() const { return in_use_bytes_; }
  // The budget or capacity that was exceeded; -1 when the system gave no figure.
  int64_t limit_bytes() const { return limit_bytes_; }
  // Made up by fault injection (CANVAS_FAIL_ALLOC) to test recovery, not a shortage of memory.
  bool injected() const { return injected_; }

 private:
  int64_t requested_bytes_;
  int64_t in_use_bytes_;
  int64_t limit_bytes_;
  bool injected_;
};

// Throws canvas::Error with `message` when `condition` is false. For checks on user input and files.
inline void check(bool condition, const std::string& message) {
  if (!condition) throw Error(message);
}

}  // namespace canvas
