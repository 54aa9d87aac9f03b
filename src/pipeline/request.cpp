#include "pipeline/request.h"

#include <cmath>

#include "pipeline/job_geometry.h"

namespace canvas {

namespace {

void validate_sampling(int steps, float cfg_scale, const QwenImageConfigs& configs) {
  const int min_steps = configs.scheduler.min_steps();
  check(steps >= min_steps && steps <= 1000,
        "steps must be between " + std::to_string(min_steps) + " and 1000" +
            (min_steps > 1 ? " for this model (its scheduler sets shift_terminal)" : "") + ", got " +
            std::to_string(steps));
  check(std::isfinite(cfg_scale) && cfg_scale >= 0.0f && cfg_scale <= 100.0f,
        "cfg scale must be between 0 and 100");
}

}  // namespace

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
  validate_sampling(request.steps, request.cfg_scale, configs);
  check(request.max_sequence_length >= 1 && request.max_sequence_length <= 1024,
        "max sequence length must be between 1 and 1024");
}

void validate_request(const ImageEditRequest& request, const QwenImageConfigs& configs) {
  validate_sampling(request.steps, request.cfg_scale, configs);
  for (const std::optional<int64_t>& side : {request.width, request.height})
    check(!side || (*side > 0 && *side <= kMaxImageSide),
          "width and height must be between 1 and " + std::to_string(kMaxImageSide));
  job_geometry(configs, request);  // sizes every picture and the output, refusing what cannot be sized
}

}  // namespace canvas
