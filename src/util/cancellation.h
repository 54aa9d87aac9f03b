// Stopping a job on request (Ctrl-C, SIGTERM, a server's cancel button). The requester sets the flag from
// any thread or a signal handler; the job looks at it between steps and phases and stops there, throwing
// CancelledError, so nothing is left half done.
#pragma once

#include <atomic>

#include "util/error.h"

namespace canvas {

class CancelledError : public Error {
 public:
  CancelledError() : Error("cancelled") {}
};

class Cancellation {
 public:
  // Async-signal-safe: a lock-free atomic store.
  void request() { requested_.store(true, std::memory_order_relaxed); }
  bool requested() const { return requested_.load(std::memory_order_relaxed); }
  void throw_if_requested() const {
    if (requested()) throw CancelledError();
  }

 private:
  static_assert(std::atomic<bool>::is_always_lock_free);
  std::atomic<bool> requested_{false};
};

}  // namespace canvas
