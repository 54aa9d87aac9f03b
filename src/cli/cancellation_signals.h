// Ctrl-C and SIGTERM for the command line. The first signal asks the job to stop (the process-wide
// Cancellation, looked at between steps); a second one ends the process at once, removing the partial files
// being written. Either way the exit code is kCancelledExitCode.
#pragma once

#include "util/cancellation.h"

namespace canvas::cli {

// 128 + SIGINT, what shells report for a process stopped by Ctrl-C.
constexpr int kCancelledExitCode = 130;

// The Cancellation that SIGINT and SIGTERM request, for the job to watch.
Cancellation& cli_cancellation();

// Handles SIGINT and SIGTERM as above. A signal the parent left ignored (a background job of a script, which
// its shell keeps from the terminal's Ctrl-C) stays ignored.
void install_cancellation_signal_handlers();

}  // namespace canvas::cli
