// The arithmetic follows Pillow 13's libImaging (Convert.c, BoxBlur.c) operation for operation, because
// bit-exact masks depend on it.
#include "image/mask.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "util/error.h"
#include "util/no_fused_multiply_add.h"

namespace canvas {

namespace {

constexpr int kBlurPasses = 3;  // ImageFilter.GaussianBlur's default

void check_pixels(const RgbImage& image, const char* what) {
  check(image.width > 0 && image.height > 0 &&
            static_cast<int64_t>(image.pixels.size()) == image.width * image.height * 3,
        std::string("cannot ") + what + " a " + std::to_string(image.width) + "x" +
            std::to_string(image.height) + " picture whose pixel buffer does not match its size");
}

// The radius of one extended box blur such that `passes` of them have the variance of a Gaussian of standard
// deviation `radius` (Gwosdek et al., "Theoretical foundations of Gaussian convolution by extended box
// filtering"): an integer part and a fractional weight for the two outermost taps.
float box_radius(float radius, int passes) {
  const float sigma2 = radius * radius / static_cast<float>(passes);
  const auto box_length = static_cast<float>(std::sqrt(12.0 * static_cast<double>(sigma2) + 1.0));
  const auto whole = static_cast<float>(std::floor((static_cast<double>(box_length) - 1.0) / 2.0));
  float fraction = (2.0f * whole + 1.0f) * (whole * (whole + 1.0f) - 3.0f * sigma2);
  fraction /= 6.0f * (sigma2 - (whole + 1.0f) * (whole + 1.0f));
  return whole + fraction;
}

// One extended box blur of a line of `count` samples `stride` bytes apart, in place: each output is the
// weighted mean of the 2 * int(radius) + 1 nearest samples and, at the radius's fractional weight, the two
// just outside them; the line's ends extend its first and last sample. Weights in 24-bit fixed point
// (Pillow's ImagingLineBoxBlur8).
class LineBoxBlur {
 public:
  explicit LineBoxBlur(float radius)
      : radius_(static_cast<int>(radius)),
        // Pillow divides 2^24 by the float width and truncates.
        inner_weight_(static_cast<uint32_t>(16777216.0f / (radius * 2.0f + 1.0f))),
        outer_weight_(((uint32_t{1} << 24) - static_cast<uint32_t>(radius_ * 2 + 1) * inner_weight_) / 2) {}

  void operator()(uint8_t* line, int64_t count, int64_t stride, std::vector<uint8_t>& scratch) const {
    scratch.resize(static_cast<size_t>(count));
    for (int64_t x = 0; x < count; ++x) scratch[static_cast<size_t>(x)] = line[x * stride];
    const uint8_t* in = scratch.data();
    const int last = static_cast<int>(count) - 1;
    const int edge_a = std::min(radius_ + 1, static_cast<int>(count));
    const int edge_b = std::max(static_cast<int>(count) - radius_ - 1, 0);
    // The sum for the pixel before the first, whose window reaches radius + 1 copies of the first sample.
    uint32_t sum = static_cast<uint32_t>(in[0]) * static_cast<uint32_t>(radius_ + 1);
    for (int x = 0; x < edge_a - 1; ++x) sum += in[x];
    sum += static_cast<uint32_t>(in[last]) * static_cast<uint32_t>(radius_ - edge_a + 1);

    auto emit = [&](int x, int leaving, int entering, int left_far, int right_far) {
      // Unsigned wrap-around, as Pillow's UINT32 accumulator: the net change is what counts.
      sum += static_cast<uint32_t>(int{in[entering]} - int{in[leaving]});
      const uint32_t total =
          sum * inner_weight_ + (uint32_t{in[left_far]} + uint32_t{in[right_far]}) * outer_weight_;
      line[static_cast<int64_t>(x) * stride] = static_cast<uint8_t>((total + (uint32_t{1} << 23)) >> 24);
    };
    if (edge_a <= edge_b) {
      for (int x = 0; x < edge_a; ++x) emit(x, 0, x + radius_, 0, x + radius_ + 1);
      for (int x = edge_a; x < edge_b; ++x)
        emit(x, x - radius_ - 1, x + radius_, x - radius_ - 1, x + radius_ + 1);
      for (int x = edge_b; x <= last; ++x) emit(x, x - radius_ - 1, last, x - radius_ - 1, last);
    } else {
      for (int x = 0; x < edge_b; ++x) emit(x, 0, x + radius_, 0, x + radius_ + 1);
      for (int x = edge_b; x < edge_a; ++x) emit(x, 0, last, 0, last);
      for (int x = edge_a; x <= last; ++x) emit(x, x - radius_ - 1, last, x - radius_ - 1, last);
    }
  }

 private:
  int radius_;
  uint32_t inner_weight_;
  uint32_t outer_weight_;
};

}  // namespace

GreyImage to_grey(const RgbImage& image) {
  check_pixels(image, "convert to grey");
  GreyImage grey{image.width, image.height,
                 std::vector<uint8_t>(static_cast<size_t>(image.width * image.height))};
  for (size_t i = 0; i < grey.pixels.size(); ++i) {
    const uint8_t* rgb = &image.pixels[i * 3];
    grey.pixels[i] =
        static_cast<uint8_t>((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
  }
  return grey;
}

RgbImage invert(const RgbImage& image) {
  check_pixels(image, "invert");
  RgbImage inverted{image.width, image.height, image.pixels, {}};
  for (uint8_t& value : inverted.pixels) value = static_cast<uint8_t>(255 - value);
  return inverted;
}

RgbImage mask_from_alpha(const DecodedImage& image) {
  check(image.has_alpha(), "the picture has no alpha channel (no transparency) to make a mask from");
  RgbImage mask{image.rgb.width, image.rgb.height, std::vector<uint8_t>(image.alpha.size() * 3), {}};
  for (size_t i = 0; i < image.alpha.size(); ++i) {
    std::fill_n(mask.pixels.begin() + static_cast<std::ptrdiff_t>(i * 3), 3,
                static_cast<uint8_t>(255 - image.alpha[i]));
  }
  return mask;
}

RgbImage gaussian_blur(const RgbImage& image, float radius) {
  check_pixels(image, "blur");
  check(std::isfinite(radius) && radius >= 0.0f,
        "the blur radius must be a finite number >= 0, got " + std::to_string(radius));
  RgbImage blurred{image.width, image.height, image.pixels, {}};
  if (radius == 0.0f) return blurred;
  const float box = box_radius(radius, kBlurPasses);
  // A box of radius 0 leaves every line unchanged; Pillow skips it.
  if (box == 0.0f) return blurred;
  check(box < 2147483648.0f, "the blur radius " + std::to_string(radius) + " is too large");
  const LineBoxBlur blur_line(box);
  std::vector<uint8_t> scratch;
  const int64_t row_bytes = image.width * 3;
  // Every pass along the rows, then every pass along the columns, each channel on its own.
  for (int pass = 0; pass < kBlurPasses; ++pass) {
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t c = 0; c < 3; ++c) blur_line(&blurred.pixels[y * row_bytes + c], image.width, 3, scratch);
    }
  }
  for (int pass = 0; pass < kBlurPasses; ++pass) {
    for (int64_t x = 0; x < row_bytes; ++x) blur_line(&blurred.pixels[x], image.height, row_bytes, scratch);
  }
  return blurred;
}

}  // namespace canvas
