// Activation peaks by dry run: a job run on meta tensors (backend/meta/meta_backend.h) allocates exactly
// what it would on a device, through the same allocator logic, without computing or touching memory.
#pragma once

#include <cstdint>
#include <functional>

namespace canvas {

// Runs `run` (typically a forward whose weights and inputs are on Device::meta()) and returns the most
// meta memory it held at once beyond what was in use before: the extra bytes the job needs at its worst
// point. Dry runs share the process-wide meta allocator, so concurrent ones take turns; `run` must not
// start another.
int64_t measure_activation_peak(const std::function<void()>& run);

}  // namespace canvas
