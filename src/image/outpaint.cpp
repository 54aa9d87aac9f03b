#include "image/outpaint.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "util/error.h"

namespace canvas {

namespace {

int64_t grown_to_multiple(int64_t margin, int64_t side, int64_t multiple) {
  const int64_t remainder = side % multiple;
  return remainder == 0 ? margin : margin + multiple - remainder;
}

}  // namespace

OutpaintMargins aligned_margins(const OutpaintMargins& margins, int64_t width, int64_t height,
                                int64_t multiple) {
  check(multiple > 0, "the canvas multiple must be positive");
  OutpaintMargins aligned = margins;
  aligned.right = grown_to_multiple(margins.right, margins.left + width + margins.right, multiple);
  aligned.bottom = grown_to_multiple(margins.bottom, margins.top + height + margins.bottom, multiple);
  return aligned;
}

RgbImage extend_canvas(const RgbImage& picture, const OutpaintMargins& margins) {
  check(picture.width > 0 && picture.height > 0, "outpainting needs a picture that is not empty");
  check(margins.left >= 0 && margins.top >= 0 && margins.right >= 0 && margins.bottom >= 0,
        "outpainting margins must be 0 or more pixels");
  RgbImage canvas;
  canvas.width = margins.left + picture.width + margins.right;
  canvas.height = margins.top + picture.height + margins.bottom;
  canvas.pixels.resize(static_cast<size_t>(canvas.width * canvas.height * 3));
  for (int64_t y = 0; y < canvas.height; ++y) {
    const int64_t source_y = std::clamp(y - margins.top, int64_t{0}, picture.height - 1);
    for (int64_t x = 0; x < canvas.width; ++x) {
      const int64_t source_x = std::clamp(x - margins.left, int64_t{0}, picture.width - 1);
      std::memcpy(&canvas.pixels[static_cast<size_t>((y * canvas.width + x) * 3)],
                  &picture.pixels[static_cast<size_t>((source_y * picture.width + source_x) * 3)], 3);
    }
  }
  return canvas;
}

RgbImage outpaint_mask(const RgbImage& picture, const OutpaintMargins& margins) {
  RgbImage mask;
  mask.width = margins.left + picture.width + margins.right;
  mask.height = margins.top + picture.height + margins.bottom;
  mask.pixels.assign(static_cast<size_t>(mask.width * mask.height * 3), 255);
  for (int64_t y = margins.top; y < margins.top + picture.height; ++y) {
    uint8_t* row = &mask.pixels[static_cast<size_t>((y * mask.width + margins.left) * 3)];
    std::fill(row, row + picture.width * 3, uint8_t{0});
  }
  return mask;
}

RgbImage paste_picture(RgbImage canvas, const RgbImage& picture, const OutpaintMargins& margins) {
  check(canvas.width == margins.left + picture.width + margins.right &&
            canvas.height == margins.top + picture.height + margins.bottom,
        "the outpainted canvas (" + std::to_string(canvas.width) + "x" + std::to_string(canvas.height) +
            ") is not the picture grown by its margins");
  for (int64_t y = 0; y < picture.height; ++y)
    std::memcpy(&canvas.pixels[static_cast<size_t>(((y + margins.top) * canvas.width + margins.left) * 3)],
                &picture.pixels[static_cast<size_t>(y * picture.width * 3)],
                static_cast<size_t>(picture.width * 3));
  return canvas;
}

}  // namespace canvas
