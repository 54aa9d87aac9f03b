// A one-line step progress bar with ETA for interactive terminals; silent elsewhere.
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
  std::string label_;
  std::FILE* stream_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace canvas::cli
