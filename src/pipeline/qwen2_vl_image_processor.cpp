#include "pipeline/qwen2_vl_image_processor.h"

#include <algorithm>
#include <cmath>

#include "image/resample.h"
#include "io/json_config.h"
#include "util/error.h"

namespace canvas {

namespace {

// PIL's BICUBIC, the only filter the Qwen2-VL processors are published with.
constexpr int64_t kPilBicubic = 3;
constexpr int64_t kChannels = 3;

std::array<double, 3> channel_values(const nlohmann::json& config, const char* key,
                                     const std::array<double, 3>& fallback, const std::string& file) {
  std::vector<double> values = config_float_list_or(config, key, {fallback.begin(), fallback.end()}, file);
  check(values.size() == 3,
        file + ": " + key + " must have 3 values (R, G, B), got " + std::to_string(values.size()));
  return {values[0], values[1], values[2]};
}

}  // namespace

Qwen2VLImageProcessorConfig Qwen2VLImageProcessorConfig::from_json(const nlohmann::json& root,
                                                                   const std::string& file) {
  Qwen2VLImageProcessorConfig config;
  if (root.contains("size") && root["size"].is_object()) {
    config.min_pixels = config_int_at_least_or(root["size"], "shortest_edge", 1, config.min_pixels, file);
    config.max_pixels = config_int_at_least_or(root["size"], "longest_edge", 1, config.max_pixels, file);
  }
  config.min_pixels = config_int_at_least_or(root, "min_pixels", 1, config.min_pixels, file);
  config.max_pixels = config_int_at_least_or(root, "max_pixels", 1, config.max_pixels, file);
  config.patch_size = config_int_at_least_or(root, "patch_size", 1, config.patch_size, file);
  config.temporal_patch_size =
      config_int_at_least_or(root, "temporal_patch_size", 1, config.temporal_patch_size, file);
  config.merge_size = config_int_at_least_or(root, "merge_size", 1, config.merge_size, file);
  config.rescale_factor = config_float_or(root, "rescale_factor", config.rescale_factor, file);
  config.image_mean = channel_values(root, "image_mean", config.image_mean, file);
  config.image_std = channel_values(root, "image_std", config.image_std, file);
  // The steps are always on in the published processors; a file turning one off describes another
  // preprocessing than this one computes.
  for (const char* step : {"do_resize", "do_rescale", "do_normalize"}) {
    check(config_bool_or(root, step, true, file), file + ": " + step + " false is not supported");
  }
  int64_t resample = config_int_or(root, "resample", kPilBicubic, file);
  check(resample == kPilBicubic,
        file + ": resample " + std::to_string(resample) + " is not supported, only 3 (bicubic)");
  check(config.min_pixels <= config.max_pixels, file + ": min_pixels " + std::to_string(config.min_pixels) +
                                                    " is above max_pixels " +
                                                    std::to_string(config.max_pixels));
  return config;
}

Qwen2VLImageProcessorConfig Qwen2VLImageProcessorConfig::from_file(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path.string());
}

ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels) {
  check(height > 0 && width > 0, "cannot resize an empty picture");
  const double h = static_cast<double>(height), w = static_cast<double>(width),
               f = static_cast<double>(factor);
  check(std::max(h, w) / std::min(h, w) <= 200.0, "a picture's aspect ratio must be at most 200, got " +
                                                      std::to_string(width) + "x" + std::to_string(height));
  // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
  int64_t h_bar = static_cast<int64_t>(std::nearbyint(h / f)) * factor;
  int64_t w_bar = static_cast<int64_t>(std::nearbyint(w / f)) * factor;
  if (h_bar * w_bar > max_pixels) {
    double beta = std::sqrt((h * w) / static_cast<double>(max_pixels));
    h_bar = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {h_bar, w_bar};
}

Qwen2VLImageFeatures preprocess_images(const std::vector<RgbImage>& images,
                                       const Qwen2VLImageProcessorConfig& config) {
  const int64_t patch = config.patch_size, merge = config.merge_size, temporal = config.temporal_patch_size;
  const int64_t factor = patch * merge;
  const int64_t row_size = kChannels * temporal * patch * patch;
  std::vector<ResizedSize> sizes;
  int64_t total_patches = 0;
  for (const RgbImage& image : images) {
    sizes.push_back(smart_resize(image.height, image.width, factor, config.min_pixels, config.max_pixels));
    total_patches += (sizes.back().height / patch) * (sizes.back().width / patch);
  }
  Qwen2VLImageFeatures features;
  features.pixel_values = Tensor::empty({total_patches, row_size}, DType::F32);
  float* out = features.pixel_values.data<float>();
  // transformers rescales in double, stores f32, then normalizes in f32 with f32 mean and std.
  std::array<float, kChannels> mean{}, deviation{};
  for (int64_t c = 0; c < kChannels; ++c) {
    mean[c] = static_cast<float>(config.image_mean[c]);
    deviation[c] = static_cast<float>(config.image_std[c]);
  }
  for (size_t i = 0; i < images.size(); ++i) {
    const ResizedSize size = sizes[i];
    // Pillow returns an equal-sized picture unchanged, so skipping the resample then is exact.
    const bool same_size = size.height == images[i].height && size.width == images[i].width;
    const RgbImage resampled =
        same_size ? RgbImage{} : resize(images[i], size.width, size.height, ResampleFilter::Bicubic);
    const RgbImage& resized = same_size ? images[i] : resampled;
    const int64_t grid_h = size.height / patch, grid_w = size.width / patch;
    features.image_grid_thw.push_back({1, grid_h, grid_w});
    // Patches go merge block by merge block (block row, block column, row and column inside the block),
    // as transformers' patchify transposes them; the picture is repeated over the temporal axis.
    for (int64_t block_y = 0; block_y < grid_h / merge; ++block_y) {
      for (int64_t block_x = 0; block_x < grid_w / merge; ++block_x) {
        for (int64_t inner_y = 0; inner_y < merge; ++inner_y) {
          for (int64_t inner_x = 0; inner_x < merge; ++inner_x) {
            const int64_t top = (block_y * merge + inner_y) * patch,
                          left = (block_x * merge + inner_x) * patch;
            for (int64_t c = 0; c < kChannels; ++c) {
              for (int64_t t = 0; t < temporal; ++t) {
                for (int64_t y = 0; y < patch; ++y) {
                  const uint8_t* source = &resized.pixels[((top + y) * size.width + left) * kChannels + c];
                  for (int64_t x = 0; x < patch; ++x) {
                    float rescaled = static_cast<float>(static_cast<double>(source[x * kChannels]) *
                                                        config.rescale_factor);
                    *out++ = (rescaled - mean[c]) / deviation[c];
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return features;
}

}  // namespace canvas
