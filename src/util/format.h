// Human-readable figures for messages and reports.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace canvas {

// Bytes in binary units: "512 B", "12.50 MiB", "40.86 GiB".
inline std::string format_bytes(int64_t bytes) {
  const double value = static_cast<double>(bytes);
  const double magnitude = value < 0 ? -value : value;
  char text[48];
  if (magnitude >= 1024.0 * 1024.0 * 1024.0) {
    std::snprintf(text, sizeof(text), "%.2f GiB", value / (1024.0 * 1024.0 * 1024.0));
  } else if (magnitude >= 1024.0 * 1024.0) {
    std::snprintf(text, sizeof(text), "%.2f MiB", value / (1024.0 * 1024.0));
  } else if (magnitude >= 1024.0) {
    std::snprintf(text, sizeof(text), "%.2f KiB", value / 1024.0);
  } else {
    std::snprintf(text, sizeof(text), "%lld B", static_cast<long long>(bytes));
  }
  return text;
}

// Seconds with two decimals: "12.34 s".
inline std::string format_seconds(double seconds) {
  char text[48];
  std::snprintf(text, sizeof(text), "%.2f s", seconds);
  return text;
}

}  // namespace canvas
