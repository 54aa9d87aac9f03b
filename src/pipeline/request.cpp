#include "pipeline/request.h"

#include <cmath>

namespace canvas {

void validate_request(const TextToImageRequest& request, const QwenImageConfigs& configs) {
  const int64_t multiple = configs.pixel_multiple();
  check(request.width > 0 && request.height > 0 && request.width <= kMaxImageSide &&
            request.height <= kMaxImageSide,
        "width and height must be between " + std::to_string(multiple) + " and " +
            std::to_string(kMaxImageSide) + ", got " + std::to_string(request.width) + "x" +
            std::to_string(request.height));
  check(request.width % multiple == 0 && request.height % multiple == 0,
        "width and height must be multiples of " + std::to_string(multiple) + ", got " +
            std::to_string(request.width) + "x" + std::to_string(request.height) + " (try " +
            std::to_string(std::max<int64_t>(multiple, request.width / multiple * multiple)) + "x" +
            std::to_string(std::max<int64_t>(multiple, request.height / multiple * multiple)) + ")");
  const int min_steps = configs.scheduler.min_steps();
  check(request.steps >= min_steps && request.steps <= 1000,
        "steps must be between " + std::to_string(min_steps) + " and 1000" +
            (min_steps > 1 ? " for this model (its scheduler sets shift_terminal)" : "") + ", got " +
            std::to_string(request.steps));
  check(std::isfinite(request.cfg_scale) && request.cfg_scale >= 0.0f && request.cfg_scale <= 100.0f,
        "cfg scale must be between 0 and 100");
  check(request.max_sequence_length >= 1 && request.max_sequence_length <= 1024,
        "max sequence length must be between 1 and 1024");
}

}  // namespace canvas
