// 2-D convolution as im2col + sgemm, and nearest-neighbour upsampling (NCHW).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"
#include "util/error.h"

namespace canvas {

namespace {

struct ConvGeometry {
  int64_t channels, height, width;
  int64_t kernel_height, kernel_width;
  int64_t out_height, out_width;
  ops::Conv2dParams params;
};

// Fills columns [C * kh * kw, rows * out_width] for output rows [first_row, first_row + rows) of one image:
// column (r, ow) of patch row (c, ki, kj) holds the input pixel under that kernel tap, or 0 in the padding.
void im2col(const float* image, const Strides& strides, const ConvGeometry& g, int64_t first_row,
            int64_t rows, float* columns) {
  const int64_t patch = g.channels * g.kernel_height * g.kernel_width;
  const int64_t block_pixels = rows * g.out_width;
  const int64_t stride = g.params.stride;
  const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / std::max<int64_t>(block_pixels, 1));
  parallel_for(patch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t patch_row = begin; patch_row < end; ++patch_row) {
      const int64_t c = patch_row / (g.kernel_height * g.kernel_width);
      const int64_t ki = patch_row / g.kernel_width % g.kernel_height;
      const int64_t kj = patch_row % g.kernel_width;
      const float* channel = image + c * strides[1];
      float* column_row = columns + patch_row * block_pixels;
      for (int64_t r = 0; r < rows; ++r) {
        float* dst = column_row + r * g.out_width;
        const int64_t ih = (first_row + r) * stride - g.params.pad_top + ki;
        if (ih < 0 || ih >= g.height) {
          std::fill(dst, dst + g.out_width, 0.0f);
          continue;
        }
        const float* src = channel + ih * strides[2];
        for (int64_t ow = 0; ow < g.out_width; ++ow) {
          const int64_t iw = ow * stride - g.params.pad_left + kj;
          dst[ow] = iw >= 0 && iw < g.width ? src[iw * strides[3]] : 0.0f;
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                        const ops::Conv2dParams& params, Tensor& out) {
  cpu::check_widenable(weight, "conv2d", "weight");
  check(weight.dim(1) == x.dim(1), "conv2d: weight " + shape_str(weight.shape()) + " expects " +
                                       std::to_string(weight.dim(1)) + " input channels, got " +
                                       std::to_string(x.dim(1)) + " (grouped convolution is not supported)");
  if (out.numel() == 0) return;
  const ConvGeometry g{x.dim(1),      x.dim(2),   x.dim(3),   weight.dim(2),
                       weight.dim(3), out.dim(2), out.dim(3), params};
  const int64_t images = x.dim(0), out_channels = weight.dim(0);
  const int64_t patch = g.channels * g.kernel_height * g.kernel_width;
  const int64_t pixels = g.out_height * g.out_width;

  const Tensor input = cpu::as_f32(x);
  // Conv weights are small next to linear ones (a few million values at most), so they widen in one go.
  const Tensor kernel = cpu::contiguous_f32(weight);
  const Tensor bias_f32 = cpu::widen_param(bias, "conv2d", "bias");
  cpu::F32Output result(out);
  float* out_data = result.data();

  // A 1x1, stride-1, unpadded conv reads the image itself as the column matrix [C, H * W].
  const bool pointwise = g.kernel_height == 1 && g.kernel_width == 1 && params.stride == 1 &&
                         params.pad_top == 0 && params.pad_bottom == 0 && params.pad_left == 0 &&
                         params.pad_right == 0 &&
                         (g.height == 1 || input.strides()[2] == g.width * input.strides()[3]);
  std::optional<cpu::BlasMatrix> image_layout;
  if (pointwise) image_layout = cpu::blas_matrix(g.channels, pixels, input.strides()[1], input.strides()[3]);

  const int64_t rows_per_block = std::clamp<int64_t>(
      cpu::kColumnBufferBytes / std::max<int64_t>(patch * g.out_width * 4, 1), 1, g.out_height);
  Tensor columns;
  if (!image_layout) columns = cpu::scratch_tensor({patch, rows_per_block * g.out_width}, DType::F32);

  for (int64_t n = 0; n < images; ++n) {
    const float* image = input.data<float>() + n * input.strides()[0];
    float* out_image = out_data + n * out_channels * pixels;
    if (bias_f32.defined()) {
      const float* bias_values = bias_f32.data<float>();
      const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / pixels);
      parallel_for(out_channels, grain, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          std::fill(out_image + o * pixels, out_image + (o + 1) * pixels, bias_values[o]);
        }
      });
    }
    const float beta = bias_f32.defined() ? 1.0f : 0.0f;
    if (image_layout) {
      cpu::sgemm(out_channels, pixels, patch, 1.0f, kernel.data<float>(), cpu::row_major(out_channels, patch),
                 image, *image_layout, beta, out_image, pixels);
      continue;
    }
    for (int64_t first_row = 0; first_row < g.out_height; first_row += rows_per_block) {
      const int64_t rows = std::min(rows_per_block, g.out_height - first_row);
      const int64_t block_pixels = rows * g.out_width;
      im2col(image, input.strides(), g, first_row, rows, columns.data<float>());
      // The block's outputs are columns [first_row * W', +block_pixels) of every out channel row.
      cpu::sgemm(out_channels, block_pixels, patch, 1.0f, kernel.data<float>(),
                 cpu::row_major(out_channels, patch), columns.data<float>(),
                 cpu::row_major(patch, block_pixels), beta, out_image + first_row * g.out_width, pixels);
    }
  }
  result.finish();
}

void CpuBackend::upsample_nearest2x(const Tensor& x, Tensor& out) {
  const Tensor input = cpu::as_f32(x);
  const int64_t channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const Strides& xs = input.strides();
  cpu::F32Output result(out);
  float* out_data = result.data();
  const float* x_data = input.data<float>();
  // One task item per input row; it writes two identical output rows.
  const int64_t grain = std::max<int64_t>(1, cpu::kElementsPerTask / std::max<int64_t>(4 * width, 1));
  parallel_for(x.dim(0) * channels * height, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / (channels * height), c = row / height % channels, h = row % height;
      const float* src = x_data + n * xs[0] + c * xs[1] + h * xs[2];
      float* dst = out_data + row * 4 * width;
      for (int64_t w = 0; w < width; ++w) dst[2 * w] = dst[2 * w + 1] = src[w * xs[3]];
      std::memcpy(dst + 2 * width, dst, static_cast<size_t>(2 * width) * sizeof(float));
    }
  });
  result.finish();
}

}  // namespace canvas
