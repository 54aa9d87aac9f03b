// The components of a model that a job plans, places, streams and recovers one by one. Code tells them
// apart by this enum; their names appear only where text is read or written (plans, profiles, metadata).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace canvas {

// In the order their phases first run.
enum class Component : uint8_t { TextEncoder, Transformer, Vae };
inline constexpr Component kComponents[] = {Component::TextEncoder, Component::Transformer, Component::Vae};

// "text_encoder", "transformer", "vae": the diffusers folder names, also the allocator's owner labels.
std::string_view component_name(Component component);
inline std::string component_label(Component component) {
  return std::string(component_name(component));
}

}  // namespace canvas
