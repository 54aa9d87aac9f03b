#include "cli/cancellation_signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

#include "util/atomic_file.h"
#include "util/error.h"

namespace canvas::cli {

namespace {

// Constant-initialized, so a handler never meets them half constructed.
constinit Cancellation process_cancellation;
constinit std::atomic<int> signals_received{0};
static_assert(std::atomic<int>::is_always_lock_free);

void write_to_stderr(const char* text) {
  // Only async-signal-safe calls here; a short write of a notice is not worth retrying.
  ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

extern "C" void on_cancellation_signal(int) {
  if (signals_received.fetch_add(1) == 0) {
    process_cancellation.request();
    write_to_stderr("\nCancelling at the next step; press Ctrl-C again to stop at once.\n");
    return;
  }
  remove_partial_files_in_progress();
  write_to_stderr("\nStopped.\n");
  ::_exit(kCancelledExitCode);
}

}  // namespace

Cancellation& cli_cancellation() {
  return process_cancellation;
}

void install_cancellation_signal_handlers() {
  for (int signal_number : {SIGINT, SIGTERM}) {
    struct sigaction previous {};
    check(::sigaction(signal_number, nullptr, &previous) == 0,
          std::string("cannot read the handler of signal ") + ::strsignal(signal_number));
    if (previous.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = on_cancellation_signal;
    sigemptyset(&action.sa_mask);
    // Interrupted reads and writes resume rather than fail with EINTR.
    action.sa_flags = SA_RESTART;
    check(::sigaction(signal_number, &action, nullptr) == 0,
          std::string("cannot handle signal ") + ::strsignal(signal_number));
  }
}

}  // namespace canvas::cli
