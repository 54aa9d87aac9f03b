#include "planning/component.h"

namespace canvas {

std::string_view component_name(Component component) {
  switch (component) {
    case Component::VisionEncoder:
      return "vision_encoder";
    case Component::TextEncoder:
      return "text_encoder";
    case Component::Transformer:
      return "transformer";
    case Component::Vae:
      return "vae";
  }
  return "unknown";
}

}  // namespace canvas
