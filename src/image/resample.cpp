// The arithmetic follows Pillow's libImaging/Resample.c step for step (the same double expressions in the
// same order, the same fixed-point rounding), because bit-exact results depend on it.
#include "image/resample.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "image/image.h"
#include "util/error.h"

namespace canvas {

namespace {

// Pillow's 8-bit passes: weights with 22 fractional bits leave 8 bits for the pixel and 2 for the
// filters' overshoot in a 32-bit sum.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_weight(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos_weight(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

struct FilterShape {
  double (*weight)(double);
  double support;  // half-width at scale 1
};

FilterShape shape_of(ResampleFilter filter) {
  return filter == ResampleFilter::Lanczos ? FilterShape{lanczos_weight, 3.0}
                                           : FilterShape{bicubic_weight, 2.0};
}

// One pass's taps: output i reads inputs [first[i], first[i] + count[i]) with weights[i * stride + j].
struct Taps {
  int64_t stride = 0;
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<int32_t> weights;
};

// `box_start` and `box_end` are the source box's edges along the axis (Pillow's floats).
Taps compute_taps(int64_t in_size, float box_start, float box_end, int64_t out_size, ResampleFilter filter) {
  const FilterShape shape = shape_of(filter);
  // The box extent is a float difference, widened for the division.
  const double scale = static_cast<double>(box_end - box_start) / static_cast<double>(out_size);
  // Shrinking stretches the filter over the scale, so every input pixel contributes (antialiasing).
  const double filter_scale = std::max(scale, 1.0);
  const double support = shape.support * filter_scale;
  const double inverse_filter_scale = 1.0 / filter_scale;

  Taps taps;
  taps.stride = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(out_size * taps.stride, 0);
  std::vector<double> weights(taps.stride);
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = static_cast<double>(box_start) + (static_cast<double>(i) + 0.5) * scale;
    // Truncation toward zero, as C's (int) cast.
    const int64_t first = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t end = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    double total = 0.0;
    for (int64_t j = 0; j < end - first; ++j) {
      weights[j] = shape.weight((static_cast<double>(j + first) - center + 0.5) * inverse_filter_scale);
      total += weights[j];
    }
    for (int64_t j = 0; j < end - first; ++j) {
      const double normalized = total != 0.0 ? weights[j] / total : weights[j];
      const double fixed = normalized * (1 << kPrecisionBits);
      taps.weights[i * taps.stride + j] = static_cast<int32_t>(normalized < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.first[i] = first;
    taps.count[i] = end - first;
  }
  return taps;
}

// A weighted sum started at one half (rounding) back to 8 bits; the shift floors, like Pillow's.
uint8_t to_pixel(int64_t sum) {
  return static_cast<uint8_t>(std::clamp<int64_t>(sum >> kPrecisionBits, 0, 255));
}

constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);

// Rows [first_row, first_row + out.height) of `in`, resampled along x to out.width.
void resample_horizontal(const RgbImage& in, int64_t first_row, const Taps& taps, RgbImage& out) {
  for (int64_t y = 0; y < out.height; ++y) {
    const uint8_t* row = in.pixels.data() + (first_row + y) * in.width * 3;
    uint8_t* out_pixel = out.pixels.data() + y * out.width * 3;
    for (int64_t x = 0; x < out.width; ++x, out_pixel += 3) {
      const int32_t* weights = &taps.weights[x * taps.stride];
      const uint8_t* source = row + taps.first[x] * 3;
      int64_t red = kHalf, green = kHalf, blue = kHalf;
      for (int64_t j = 0; j < taps.count[x]; ++j, source += 3) {
        red += source[0] * weights[j];
        green += source[1] * weights[j];
        blue += source[2] * weights[j];
      }
      out_pixel[0] = to_pixel(red);
      out_pixel[1] = to_pixel(green);
      out_pixel[2] = to_pixel(blue);
    }
  }
}

// `in` resampled along y to out.height; taps.first counts from in's first row. Whole rows are summed at a
// time (integer sums, so the order cannot change the result) to read memory in order.
void resample_vertical(const RgbImage& in, const Taps& taps, RgbImage& out) {
  const int64_t row_bytes = in.width * 3;
  std::vector<int64_t> sums(row_bytes);
  for (int64_t y = 0; y < out.height; ++y) {
    const int32_t* weights = &taps.weights[y * taps.stride];
    std::fill(sums.begin(), sums.end(), kHalf);
    for (int64_t j = 0; j < taps.count[y]; ++j) {
      const uint8_t* row = in.pixels.data() + (taps.first[y] + j) * row_bytes;
      for (int64_t i = 0; i < row_bytes; ++i) sums[i] += row[i] * weights[j];
    }
    uint8_t* out_row = out.pixels.data() + y * row_bytes;
    for (int64_t i = 0; i < row_bytes; ++i) out_row[i] = to_pixel(sums[i]);
  }
}

RgbImage blank(int64_t width, int64_t height) {
  RgbImage image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width * height * 3));
  return image;
}

// The first `rows` rows from `first_row` of `image`, resampled to `width`.
RgbImage horizontal_pass(const RgbImage& image, const Taps& taps, int64_t width, int64_t first_row,
                         int64_t rows) {
  RgbImage out = blank(width, rows);
  resample_horizontal(image, first_row, taps, out);
  return out;
}

RgbImage vertical_pass(const RgbImage& image, const Taps& taps, int64_t height) {
  RgbImage out = blank(image.width, height);
  resample_vertical(image, taps, out);
  return out;
}

}  // namespace

RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResampleFilter filter) {
  return resize(image, width, height, filter,
                ResampleBox{0, 0, static_cast<float>(image.width), static_cast<float>(image.height)});
}

RgbImage resize(const RgbImage& image, int64_t width, int64_t height, ResampleFilter filter,
                const ResampleBox& box) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  check(width > 0 && height > 0 && width <= kMaxImagePixels / height,
        "cannot resize to " + size + ": the result must have 1 to " + std::to_string(kMaxImagePixels) +
            " pixels");
  check(image.width > 0 && image.height > 0 &&
            static_cast<int64_t>(image.pixels.size()) == image.width * image.height * 3,
        "cannot resize a " + std::to_string(image.width) + "x" + std::to_string(image.height) +
            " image whose pixel buffer does not match its size");
  check(box.left >= 0 && box.top >= 0 && box.right <= static_cast<float>(image.width) &&
            box.bottom <= static_cast<float>(image.height) && box.right >= box.left && box.bottom >= box.top,
        "the resize box must lie inside the " + std::to_string(image.width) + "x" +
            std::to_string(image.height) + " picture with its right and bottom edges past its left and top");
  // Pillow copies a whole-pixel box that already has the requested size.
  const bool whole_pixels = box.left == std::floor(box.left) && box.top == std::floor(box.top);
  if (whole_pixels && box.right - box.left == static_cast<float>(width) &&
      box.bottom - box.top == static_cast<float>(height)) {
    RgbImage copy = blank(width, height);
    const auto left = static_cast<int64_t>(box.left), top = static_cast<int64_t>(box.top);
    for (int64_t y = 0; y < height; ++y) {
      const auto source = image.pixels.begin() + ((top + y) * image.width + left) * 3;
      std::copy(source, source + width * 3, copy.pixels.begin() + y * width * 3);
    }
    return copy;
  }
  const bool horizontal = width != image.width || box.left != 0 || box.right != static_cast<float>(width);
  const bool vertical = height != image.height || box.top != 0 || box.bottom != static_cast<float>(height);
  Taps vertical_taps = compute_taps(image.height, box.top, box.bottom, height, filter);
  const Taps horizontal_taps = compute_taps(image.width, box.left, box.right, width, filter);

  // Pillow 13's ImagingResampleInner. Each pass rounds to 8 bits, so the order shows in the result: the
  // vertical pass comes first when the height loses more than twice as many pixels as the width.
  const int64_t height_loss = image.height - height;
  if (height_loss > 0 && height_loss > (image.width - width) * 2) {
    const RgbImage shorter = vertical ? vertical_pass(image, vertical_taps, height) : image;
    return horizontal ? horizontal_pass(shorter, horizontal_taps, width, 0, height) : shorter;
  }
  // Otherwise the horizontal pass comes first, over just the rows the vertical pass reads.
  if (!horizontal) return vertical_pass(image, vertical_taps, height);
  const int64_t first_row = vertical_taps.first.front();
  const int64_t end_row = vertical_taps.first.back() + vertical_taps.count.back();
  const RgbImage rows = horizontal_pass(image, horizontal_taps, width, first_row, end_row - first_row);
  if (!vertical) return rows;
  for (int64_t& first : vertical_taps.first) first -= first_row;
  return vertical_pass(rows, vertical_taps, height);
}

}  // namespace canvas
