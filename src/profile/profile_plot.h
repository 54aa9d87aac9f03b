// A job profile drawn as one self-contained SVG (no scripts, no external files), about 1000x500: memory in
// GiB over time in seconds, with a line per device's allocated bytes, per GPU's memory used by all
// processes where the profile asked for it, and host RSS; shaded bands for the top-level phases; and the
// "copy" and "compute" intervals as two lanes under the plot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace canvas {

// `profile` is Profiler::to_json()'s object (profile/profiler.h), or one read back from its file.
std::string render_profile_svg(const nlohmann::json& profile);

}  // namespace canvas
