// The Qwen2-VL image processor (transformers' Qwen2VLImageProcessor): what turns the condition pictures of
// Qwen-Image-Edit into the vision tower's input. Each picture is resized so both sides are multiples of
// patch_size * merge_size and its area lies within [min_pixels, max_pixels], rescaled and normalized with
// the CLIP mean and std, and cut into patches in the order the tower's window attention expects.
#pragma once

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/png_image.h"
#include "tensor/tensor.h"

namespace canvas {

struct Qwen2VLImageProcessorConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};

  // Reads a checkpoint's processor/preprocessor_config.json. The limits come from `min_pixels` /
  // `max_pixels` (the published files) or `size: {shortest_edge, longest_edge}` (transformers 5); as in
  // transformers, min_pixels and max_pixels win when both are there.
  static Qwen2VLImageProcessorConfig from_json(const nlohmann::json& config,
                                               const std::string& file_for_messages);
  static Qwen2VLImageProcessorConfig from_file(const std::filesystem::path& preprocessor_config_json);
};

struct ResizedSize {
  int64_t height = 0;
  int64_t width = 0;
};

// transformers' smart_resize: the size closest to height x width in aspect whose sides are multiples of
// `factor` and whose area lies within [min_pixels, max_pixels]. Throws canvas::Error for an aspect ratio
// above 200, as the reference does.
ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels);

struct Qwen2VLImageFeatures {
  // [sum over images of grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size^2], f32 on
  // the host. Rows are patches in merge-block order (each merge_size x merge_size group of patches is
  // consecutive); a row is the patch's channels, then its temporal copies, then its pixels row by row.
  Tensor pixel_values;
  // (grid_t, grid_h, grid_w) per image, in patches: grid_t is 1 for a picture.
  std::vector<std::array<int64_t, 3>> image_grid_thw;
};

// What `processor(images=...)` returns for these pictures with transformers' PIL backend (Pillow's BICUBIC
// resize), the one the pinned reference stack loads. With torchvision installed, transformers 5.24 loads its
// torchvision backend instead, which resizes in float without Pillow's 8-bit rounding and clipping between
// the two passes; torch's antialiased bicubic (what torchvision calls) differs from Pillow on a quarter of
// the pixels of the noisy golden pictures, by up to 9 levels.
Qwen2VLImageFeatures preprocess_images(const std::vector<RgbImage>& images,
                                       const Qwen2VLImageProcessorConfig& config);

}  // namespace canvas
