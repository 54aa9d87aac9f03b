#include "cli/progress_bar.h"

#include <unistd.h>

namespace canvas::cli {

ProgressBar::ProgressBar(std::string label, std::FILE* stream)
    : label_(std::move(label)),
      stream_(stream),
      interactive_(isatty(fileno(stream)) != 0),
      start_(Clock::now()),
      last_line_(start_) {}

void ProgressBar::update(int done, int total) {
  if (total <= 0) return;
  const Clock::time_point now = Clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double per_step = done > 0 ? elapsed / done : 0.0;
  double remaining = per_step * (total - done);
  if (!interactive_) {
    if (done != 1 && done != total && now - last_line_ < kPlainLineInterval) return;
    last_line_ = now;
    std::fprintf(stream_, "%s: step %d/%d, %.2f s/step, ETA %.0f s\n", label_.c_str(), done, total, per_step,
                 remaining);
    std::fflush(stream_);
    return;
  }
  constexpr int kWidth = 30;
  int filled = done * kWidth / total;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '-');
  std::fprintf(stream_, "\r%s [%s] %d/%d  %.2f s/step  ETA %.0f s ", label_.c_str(), bar.c_str(), done, total,
               per_step, remaining);
  std::fflush(stream_);
}

void ProgressBar::finish() {
  if (interactive_) std::fprintf(stream_, "\n");
}

}  // namespace canvas::cli
