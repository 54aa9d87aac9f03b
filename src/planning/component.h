// The components of a model that a job plans, places, streams and recovers one by one. Code tells them
// apart by this enum; their names appear only where text is read or written (plans, profiles, metadata).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace canvas {

// In the order their phases first run. Only editing jobs have the vision encoder: the Qwen2.5-VL vision
// tower, whose weights sit in the text encoder's checkpoint but which runs as a phase of its own.
enum class Component : uint8_t { VisionEncoder, TextEncoder, Transformer, Vae };
inline constexpr Component kComponents[] = {Component::VisionEncoder, Component::TextEncoder,
                                            Component::Transformer, Component::Vae};

// "vision_encoder", "text_encoder", "transformer", "vae": the diffusers folder names (the vision encoder's
// is its own, as it shares text_encoder/), also the allocator's owner labels.
std::string_view component_name(Component component);
inline std::string component_label(Component component) {
  return std::string(component_name(component));
}

}  // namespace canvas
