#include "cli/progress_bar.h"

#include <unistd.h>

namespace canvas::cli {

ProgressBar::ProgressBar(std::string label, std::FILE* stream)
    : label_(std::move(label)),
      stream_(stream),
      interactive_(isatty(fileno(stream)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int done, int total) {
  if (!interactive_ || total <= 0) return;
  constexpr int kWidth = 30;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double per_step = done > 0 ? elapsed / done : 0.0;
  double remaining = per_step * (total - done);
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
