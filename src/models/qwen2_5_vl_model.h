// The pieces of transformers' Qwen2_5_VLModel that join the vision tower (models/qwen2_5_vl_vision.h) and the
// text model (models/qwen2_5_vl_text.h), for text with pictures as Qwen-Image-Edit encodes its prompts:
//
//   ids = expand_image_tokens(tokenizer.encode(text), grids, config)   // what the processor does to the text
//   hidden = forward_text_with_images(text_model, config, ids, {tower.forward(pixels, grids), grids})
//
// which embeds the tokens, puts the vision tower's rows in place of the <|image_pad|> tokens
// (scatter_image_embeds), gives every token its 3D M-RoPE position (get_rope_index) and runs the text model.
// One sequence at a time; images only (Qwen-Image passes no videos).
#pragma once

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "models/qwen2_5_vl_text.h"
#include "models/qwen2_5_vl_vision.h"

namespace canvas {

// Qwen2_5_VLConfig: a text encoder's config.json as a whole.
struct Qwen2_5_VLConfig {
  Qwen2_5_VLTextConfig text_config;
  Qwen2_5_VLVisionConfig vision_config;
  // The special tokens, from the top level of config.json in both layouts (the published flat files and
  // transformers >= 5's nested text_config).
  int32_t image_token_id = 0;         // <|image_pad|>, one per merged image patch
  int32_t video_token_id = 0;         // <|video_pad|>
  int32_t vision_start_token_id = 0;  // <|vision_start|>, before each picture's image tokens
  int32_t vision_end_token_id = 0;    // <|vision_end|>, after them

  static Qwen2_5_VLConfig from_json(const nlohmann::json& config, const std::string& file_for_messages);
  static Qwen2_5_VLConfig from_file(const std::filesystem::path& config_json);
};

// Pictures as the text model receives them: the vision tower's output and each picture's patch grid.
struct Qwen2_5_VLImageEmbeds {
  // [sum over pictures of image_token_count(grid), text hidden_size]: what
  // Qwen2_5_VisionTransformerPretrainedModel::forward returns; undefined when there are no pictures.
  Tensor embeds;
  // (grid_t, grid_h, grid_w) in patches, one per picture in order: Qwen2VLImageFeatures::image_grid_thw.
  std::vector<std::array<int64_t, 3>> grid_thw;
};

// How many tokens a picture of patch grid (t, h, w) takes in the text: t * h * w / spatial_merge_size^2.
int64_t image_token_count(const std::array<int64_t, 3>& grid_thw, int64_t spatial_merge_size);

// The processor's placeholder expansion (Qwen2VLProcessor): the i-th image token of `input_ids` becomes
// image_token_count(image_grid_thw[i]) copies of itself. Throws canvas::Error when the ids hold another
// number of image tokens than there are grids.
std::vector<int32_t> expand_image_tokens(std::span<const int32_t> input_ids,
                                         const std::vector<std::array<int64_t, 3>>& image_grid_thw,
                                         const Qwen2_5_VLConfig& config);

// get_rope_index for one sequence of text and pictures: position_ids [3, 1, L] i64 on the host (rows:
// temporal, height, width). Text runs count up on all three rows from where the previous run ended; a
// picture's tokens (a run of image tokens, which takes the next grid) all start at the position p after the
// text before it: temporal p + t, height p + row, width p + column over the merged grid; the text after it
// resumes at p + max(h, w) / spatial_merge_size. With an `attention_mask` (nonzero for real tokens) the
// masked tokens get position 0 and the others count as if the masked ones were not there. Throws
// canvas::Error when a run of image tokens does not hold its grid's image_token_count or the runs and
// grids differ in number.
Tensor get_rope_index(std::span<const int32_t> input_ids,
                      const std::vector<std::array<int64_t, 3>>& image_grid_thw,
                      const Qwen2_5_VLConfig& config, std::span<const int64_t> attention_mask = {});

// inputs_embeds.masked_scatter(input_ids == image_token_id, image_embeds) for one sequence: the k-th image
// token's row of inputs_embeds [1, L, hidden] becomes row k of image_embeds [N, hidden] (converted to
// inputs_embeds' dtype and device). Returns a new tensor. Throws canvas::Error when the sequence holds
// another number of image tokens than N.
Tensor scatter_image_embeds(const Tensor& inputs_embeds, std::span<const int32_t> input_ids,
                            const Tensor& image_embeds, const Qwen2_5_VLConfig& config);

// How the text model numbers a sequence's tokens around its pictures.
enum class TextPositions {
  // Qwen2.5-VL's 3D M-RoPE positions (get_rope_index): what the models were trained with, and what
  // transformers computes when the processor's mm_token_type_ids reach it (transformers 4 always did).
  MRope,
  // 0, 1, 2, ... on all three rows, pictures included: what transformers 5 falls back to without
  // mm_token_type_ids, which diffusers 0.42's edit pipelines do not pass (diffusers issue #14194). Only for
  // reproducing that reference's numbers.
  Sequential,
};

// Qwen2_5_VLModel.forward for one sequence whose pictures the vision tower has already encoded: embeds
// `input_ids` (expanded), scatters `images.embeds` in, runs the text model at get_rope_index's positions and
// returns the last hidden state after the final norm, [1, L, hidden_size], in `activation_dtype`. With no
// pictures (empty grid_thw) it is the text model's plain forward: positions 0..L-1 and image tokens, if any,
// keep their own embedding, as transformers does without pixel_values. `gate` streams the text model's
// layers.
Tensor forward_text_with_images(const Qwen2_5_VLTextModel& text_model, const Qwen2_5_VLConfig& config,
                                std::span<const int32_t> input_ids, const Qwen2_5_VLImageEmbeds& images,
                                DType activation_dtype = DType::F32, nn::BlockGate* gate = nullptr,
                                TextPositions positions = TextPositions::MRope);

}  // namespace canvas
