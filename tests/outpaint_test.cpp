// Outpainting's image functions (image/outpaint.h): the grown canvas, its mask, the paste-back and the
// margins' alignment.
#include "image/outpaint.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace canvas {
namespace {

// A 2x2 picture whose pixels are all different: (1,2,3) (4,5,6) / (7,8,9) (10,11,12).
RgbImage two_by_two() {
  return {2, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {}};
}

const uint8_t* pixel(const RgbImage& image, int64_t x, int64_t y) {
  return &image.pixels[static_cast<size_t>((y * image.width + x) * 3)];
}

TEST(Outpaint, TheCanvasTakesEachNewPixelFromTheNearestPictureEdge) {
  const RgbImage canvas = extend_canvas(two_by_two(), {1, 2, 3, 0});
  ASSERT_EQ(canvas.width, 6);
  ASSERT_EQ(canvas.height, 4);
  EXPECT_EQ(*pixel(canvas, 0, 0), 1);  // above-left corner: the top-left pixel
  EXPECT_EQ(*pixel(canvas, 1, 2), 1);  // the picture itself, at (left, top)
  EXPECT_EQ(*pixel(canvas, 2, 2), 4);
  EXPECT_EQ(*pixel(canvas, 2, 3), 10);
  EXPECT_EQ(*pixel(canvas, 5, 3), 10);  // right of the bottom row
  EXPECT_EQ(*pixel(canvas, 5, 0), 4);   // above-right corner
  EXPECT_EQ(*pixel(canvas, 0, 3), 7);   // left of the bottom row
  EXPECT_EQ(pixel(canvas, 4, 2)[2], 6);
}

TEST(Outpaint, TheMaskIsWhiteOverTheMarginsAndBlackOverThePicture) {
  const RgbImage mask = outpaint_mask(two_by_two(), {1, 0, 0, 1});
  ASSERT_EQ(mask.width, 3);
  ASSERT_EQ(mask.height, 3);
  const std::vector<uint8_t> expected_levels{255, 0, 0, 255, 0, 0, 255, 255, 255};
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(pixel(mask, x, y)[c], expected_levels[static_cast<size_t>(y * 3 + x)]) << x << "," << y;
}

TEST(Outpaint, PastingBackRestoresThePictureAndKeepsTheRest) {
  const OutpaintMargins margins{1, 1, 1, 0};
  const RgbImage canvas{4, 3, std::vector<uint8_t>(4 * 3 * 3, 200), {}};
  const RgbImage pasted = paste_picture(canvas, two_by_two(), margins);
  EXPECT_EQ(*pixel(pasted, 0, 0), 200);
  EXPECT_EQ(*pixel(pasted, 1, 1), 1);
  EXPECT_EQ(pixel(pasted, 2, 2)[2], 12);
  EXPECT_EQ(*pixel(pasted, 3, 2), 200);
  EXPECT_THROW(paste_picture(canvas, two_by_two(), {0, 0, 0, 0}), Error);
}

TEST(Outpaint, MarginsGrowOnTheRightAndBottomToTheMultiple) {
  EXPECT_EQ(aligned_margins({16, 0, 16, 0}, 32, 32, 16), (OutpaintMargins{16, 0, 16, 0}));
  EXPECT_EQ(aligned_margins({10, 3, 0, 0}, 32, 30, 16), (OutpaintMargins{10, 3, 6, 15}));
  EXPECT_EQ(aligned_margins({0, 0, 0, 0}, 17, 16, 16), (OutpaintMargins{0, 0, 15, 0}));
}

}  // namespace
}  // namespace canvas
