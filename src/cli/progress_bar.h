// Step progress with ETA: a one-line bar redrawn in place on a terminal; elsewhere (a log file, a pipe) a
// plain line for the first step, then at most one every few seconds, and one for the last step.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace canvas::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, std::FILE* stream = stderr);
  void update(int done, int total);
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  // Often enough to show a long job is alive, seldom enough to keep a log readable.
  static constexpr std::chrono::seconds kPlainLineInterval{2};

  std::string label_;
  std::FILE* stream_;
  bool interactive_;
  Clock::time_point start_;
  Clock::time_point last_line_;
};

}  // namespace canvas::cli
