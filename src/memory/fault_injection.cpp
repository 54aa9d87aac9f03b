#include "memory/fault_injection.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "util/error.h"

namespace canvas {

namespace {

// A fixed function of (seed, index): whether allocation `index` fails does not depend on which thread
// made it or on timing.
double uniform_of(uint64_t seed, int64_t index) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);
}

int64_t parse_count(std::string_view text, const std::string& usage) {
  std::string digits(text);
  char* end = nullptr;
  long long value = std::strtoll(digits.c_str(), &end, 10);
  check(!digits.empty() && end == digits.c_str() + digits.size() && value > 0, usage);
  return value;
}

}  // namespace

FaultInjector& FaultInjector::instance() {
  static FaultInjector injector;
  return injector;
}

FaultInjector::FaultInjector() {
  const char* spec = std::getenv("CANVAS_FAIL_ALLOC");
  if (spec != nullptr) configure(spec);
}

void FaultInjector::configure(std::string_view spec) {
  const std::string text(spec);
  const std::string usage = "CANVAS_FAIL_ALLOC='" + text +
                            "': expected N or N,M,... (positive allocation numbers) or random:SEED:P";
  std::vector<int64_t> fail_at;
  uint64_t seed = 0;
  double probability = 0.0;
  if (text.rfind("random:", 0) == 0) {
    const size_t colon = text.find(':', 7);
    check(colon != std::string::npos, usage);
    seed = static_cast<uint64_t>(parse_count(text.substr(7, colon - 7), usage));
    char* end = nullptr;
    const std::string probability_text = text.substr(colon + 1);
    probability = std::strtod(probability_text.c_str(), &end);
    check(!probability_text.empty() && end == probability_text.c_str() + probability_text.size() &&
              std::isfinite(probability) && probability >= 0.0 && probability <= 1.0,
          usage + " (P between 0 and 1)");
  } else if (!text.empty()) {
    for (size_t start = 0; start <= text.size();) {
      const size_t comma = std::min(text.find(',', start), text.size());
      fail_at.push_back(parse_count(text.substr(start, comma - start), usage));
      start = comma + 1;
    }
    std::sort(fail_at.begin(), fail_at.end());
  }
  spec_ = text;
  fail_at_ = std::move(fail_at);
  seed_ = seed;
  probability_ = probability;
  seen_.store(0, std::memory_order_relaxed);
}

bool FaultInjector::should_fail() {
  const int64_t index = seen_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!fail_at_.empty()) return std::binary_search(fail_at_.begin(), fail_at_.end(), index);
  return probability_ > 0.0 && uniform_of(seed_, index) < probability_;
}

}  // namespace canvas
