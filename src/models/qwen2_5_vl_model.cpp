#include "models/qwen2_5_vl_model.h"

#include <algorithm>
#include <limits>

#include "io/json_config.h"

namespace canvas {

namespace {

int32_t token_id(const nlohmann::json& root, std::string_view key, const std::string& file) {
  const int64_t id = config_int_at_least(root, key, 0, file);
  check(id <= std::numeric_limits<int32_t>::max(),
        file + ": " + std::string(key) + " " + std::to_string(id) + " is not a token id");
  return static_cast<int32_t>(id);
}

std::string grid_str(const std::array<int64_t, 3>& grid_thw) {
  std::string text = "(";  // appended rather than "(" + ..., which GCC 12 misreads as an overlapping copy
  text +=
      std::to_string(grid_thw[0]) + ", " + std::to_string(grid_thw[1]) + ", " + std::to_string(grid_thw[2]);
  return text + ")";
}

int64_t count_image_tokens(std::span<const int32_t> input_ids, const Qwen2_5_VLConfig& config) {
  return std::count(input_ids.begin(), input_ids.end(), config.image_token_id);
}

}  // namespace

Qwen2_5_VLConfig Qwen2_5_VLConfig::from_json(const nlohmann::json& root, const std::string& file) {
  Qwen2_5_VLConfig config;
  config.text_config = Qwen2_5_VLTextConfig::from_json(root, file);
  config.vision_config = Qwen2_5_VLVisionConfig::from_json(root, file);
  config.image_token_id = token_id(root, "image_token_id", file);
  config.video_token_id = token_id(root, "video_token_id", file);
  config.vision_start_token_id = token_id(root, "vision_start_token_id", file);
  config.vision_end_token_id = token_id(root, "vision_end_token_id", file);
  return config;
}

Qwen2_5_VLConfig Qwen2_5_VLConfig::from_file(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

int64_t image_token_count(const std::array<int64_t, 3>& grid_thw, int64_t spatial_merge_size) {
  const int64_t merge = spatial_merge_size;
  check(grid_thw[0] >= 1 && grid_thw[1] >= 1 && grid_thw[2] >= 1 && grid_thw[1] % merge == 0 &&
            grid_thw[2] % merge == 0,
        "image grid " + grid_str(grid_thw) + " is not a positive patch grid whose height and width are " +
            "multiples of spatial_merge_size " + std::to_string(merge));
  return grid_thw[0] * grid_thw[1] * grid_thw[2] / (merge * merge);
}

std::vector<int32_t> expand_image_tokens(std::span<const int32_t> input_ids,
                                         const std::vector<std::array<int64_t, 3>>& image_grid_thw,
                                         const Qwen2_5_VLConfig& config) {
  const int64_t image_tokens = count_image_tokens(input_ids, config);
  check(image_tokens == static_cast<int64_t>(image_grid_thw.size()),
        "the text holds " + std::to_string(image_tokens) + " image tokens (<|image_pad|>) for " +
            std::to_string(image_grid_thw.size()) + " pictures; each picture needs exactly one");
  std::vector<int32_t> expanded;
  size_t image = 0;
  for (int32_t id : input_ids) {
    const int64_t copies =
        id == config.image_token_id
            ? image_token_count(image_grid_thw[image++], config.vision_config.spatial_merge_size)
            : 1;
    expanded.insert(expanded.end(), static_cast<size_t>(copies), id);
  }
  return expanded;
}

Tensor get_rope_index(std::span<const int32_t> input_ids,
                      const std::vector<std::array<int64_t, 3>>& image_grid_thw,
                      const Qwen2_5_VLConfig& config, std::span<const int64_t> attention_mask) {
  const int64_t length = static_cast<int64_t>(input_ids.size());
  check(attention_mask.empty() || static_cast<int64_t>(attention_mask.size()) == length,
        "get_rope_index: attention_mask of " + std::to_string(attention_mask.size()) + " tokens for " +
            std::to_string(length) + " input ids");
  // The real tokens, in order; masked ones keep position 0 on every row.
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < length; ++i) {
    if (attention_mask.empty() || attention_mask[i] != 0) kept.push_back(i);
  }
  std::vector<int64_t> positions(static_cast<size_t>(3 * length), 0);
  auto set = [&](int64_t token, int64_t temporal, int64_t height, int64_t width) {
    positions[token] = temporal;
    positions[length + token] = height;
    positions[2 * length + token] = width;
  };
  const int64_t merge = config.vision_config.spatial_merge_size;
  int64_t current = 0;
  size_t image = 0;
  for (size_t run_start = 0; run_start < kept.size();) {
    const bool is_image = input_ids[kept[run_start]] == config.image_token_id;
    size_t run_end = run_start;
    while (run_end < kept.size() && (input_ids[kept[run_end]] == config.image_token_id) == is_image)
      ++run_end;
    const int64_t run_length = static_cast<int64_t>(run_end - run_start);
    if (!is_image) {
      for (int64_t i = 0; i < run_length; ++i)
        set(kept[run_start + i], current + i, current + i, current + i);
      current += run_length;
    } else {
      check(image < image_grid_thw.size(),
            "get_rope_index: the ids hold more runs of image tokens than the " +
                std::to_string(image_grid_thw.size()) + " image grids");
      const std::array<int64_t, 3>& grid = image_grid_thw[image];
      check(run_length == image_token_count(grid, merge),
            "get_rope_index: image " + std::to_string(image) + " has " + std::to_string(run_length) +
                " image tokens in the ids but its grid " + grid_str(grid) + " needs " +
                std::to_string(image_token_count(grid, merge)));
      const int64_t height = grid[1] / merge, width = grid[2] / merge;
      size_t token = run_start;
      for (int64_t t = 0; t < grid[0]; ++t) {
        for (int64_t h = 0; h < height; ++h) {
          for (int64_t w = 0; w < width; ++w) set(kept[token++], current + t, current + h, current + w);
        }
      }
      current += std::max(height, width);
      ++image;
    }
    run_start = run_end;
  }
  check(image == image_grid_thw.size(), "get_rope_index: " + std::to_string(image_grid_thw.size()) +
                                            " image grids for " + std::to_string(image) +
                                            " runs of image tokens in the ids");
  return Tensor::from_ints(positions, {3, 1, length});
}

Tensor scatter_image_embeds(const Tensor& inputs_embeds, std::span<const int32_t> input_ids,
                            const Tensor& image_embeds, const Qwen2_5_VLConfig& config) {
  const int64_t length = static_cast<int64_t>(input_ids.size());
  check(inputs_embeds.ndim() == 3 && inputs_embeds.dim(0) == 1 && inputs_embeds.dim(1) == length,
        "scatter_image_embeds: inputs_embeds " + shape_str(inputs_embeds.shape()) + " is not [1, " +
            std::to_string(length) + ", hidden] for the " + std::to_string(length) + " input ids");
  const int64_t image_tokens = count_image_tokens(input_ids, config);
  const int64_t rows = image_embeds.defined() ? image_embeds.dim(0) : 0;
  check(!image_embeds.defined() || (image_embeds.ndim() == 2 && image_embeds.dim(1) == inputs_embeds.dim(2)),
        "scatter_image_embeds: image_embeds " + shape_str(image_embeds.shape()) + " is not [rows, " +
            std::to_string(inputs_embeds.dim(2)) + "]");
  check(image_tokens == rows, "Image features and image tokens do not match: the ids hold " +
                                  std::to_string(image_tokens) + " image tokens, the vision tower gave " +
                                  std::to_string(rows) + " image embeddings");
  if (rows == 0) return inputs_embeds;
  const Tensor images = image_embeds.to(inputs_embeds.device()).to(inputs_embeds.dtype()).unsqueeze(0);
  // Alternate runs of text rows from inputs_embeds and image rows, in order.
  std::vector<Tensor> parts;
  int64_t next_image_row = 0;
  for (int64_t start = 0; start < length;) {
    const bool is_image = input_ids[start] == config.image_token_id;
    int64_t end = start;
    while (end < length && (input_ids[end] == config.image_token_id) == is_image) ++end;
    if (is_image) {
      parts.push_back(images.slice(1, next_image_row, next_image_row + end - start));
      next_image_row += end - start;
    } else {
      parts.push_back(inputs_embeds.slice(1, start, end));
    }
    start = end;
  }
  return ops::concat(parts, 1);
}

Tensor forward_text_with_images(const Qwen2_5_VLTextModel& text_model, const Qwen2_5_VLConfig& config,
                                std::span<const int32_t> input_ids, const Qwen2_5_VLImageEmbeds& images,
                                DType activation_dtype, nn::BlockGate* gate, TextPositions positions) {
  const int64_t length = static_cast<int64_t>(input_ids.size());
  const Tensor ids = Tensor::from_ints(std::vector<int64_t>(input_ids.begin(), input_ids.end()), {1, length});
  const Tensor attention_mask =
      Tensor::from_ints(std::vector<int64_t>(static_cast<size_t>(length), 1), {1, length});
  if (images.grid_thw.empty()) {
    check(!images.embeds.defined() || images.embeds.dim(0) == 0,
          "forward_text_with_images: image embeddings were given without their grids");
    return text_model.forward(ids, attention_mask, activation_dtype, gate);
  }
  Tensor position_ids;
  if (positions == TextPositions::MRope) {
    position_ids = get_rope_index(input_ids, images.grid_thw, config);
  } else {
    std::vector<int64_t> sequential(static_cast<size_t>(3 * length));
    for (size_t i = 0; i < sequential.size(); ++i) sequential[i] = static_cast<int64_t>(i) % length;
    position_ids = Tensor::from_ints(sequential, {3, 1, length});
  }
  const Tensor inputs_embeds =
      scatter_image_embeds(text_model.embed(ids, activation_dtype), input_ids, images.embeds, config);
  return text_model.forward_embeds(inputs_embeds, position_ids, attention_mask, gate);
}

}  // namespace canvas
