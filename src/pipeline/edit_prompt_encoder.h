// Qwen-Image-Edit's prompt encoding with pictures (diffusers' QwenImageEditPlusPipeline and
// QwenImageEditPipeline `_get_qwen_prompt_embeds`): the pictures' placeholders and the prompt are wrapped in
// the edit chat template, the placeholders are expanded to one image token per merged patch, the text
// encoder reads the vision tower's embeddings in their place at 3D M-RoPE positions, and the hidden states
// of the template's 64-token system part are dropped. Nothing is truncated.
//
// Use (the pictures are encoded once and serve the prompt and the negative prompt alike):
//
//   Qwen2VLImageFeatures features = preprocess_images(pictures, processor_config);
//   Qwen2_5_VLImageEmbeds images{tower.forward(features.pixel_values, features.image_grid_thw, dtype),
//                                features.image_grid_thw};
//   QwenImageEditPromptEncoder encoder(EditPromptTemplate::EditPlus, tokenizer, text_model,
//                                      Qwen2_5_VLConfig::from_file(text_encoder_config_json));
//   PromptEmbedding positive = encoder.encode(prompt, images, dtype);
//   PromptEmbedding negative = encoder.encode(negative_prompt, images, dtype);
//
// The 3D positions are those transformers computes when the processor's mm_token_type_ids reach the model,
// as in transformers 4.x. diffusers 0.42.1 drops that field and transformers 5 then falls back to positions
// 0..L-1 for the whole prompt (diffusers issue #14194, fix in PR #14189); a reference run without the fix
// differs from this encoder by ~20% on the tiny model's embeddings (tests/golden/vision/edit_prompt/), and
// TextPositions::Sequential reproduces it.
#pragma once

#include <string>
#include <vector>

#include "models/qwen2_5_vl_model.h"
#include "pipeline/prompt_encoder.h"
#include "pipeline/qwen_image_model.h"

namespace canvas {

enum class EditPromptTemplate {
  // QwenImageEditPlusPipeline (Qwen-Image-Edit-2509, -2511): "Picture i: <|vision_start|><|image_pad|>
  // <|vision_end|>" for each picture, then the prompt. Takes any number of pictures, none included.
  EditPlus,
  // QwenImageEditPipeline (Qwen-Image-Edit): "<|vision_start|><|image_pad|><|vision_end|>" then the
  // prompt. Takes one picture, or none (the placeholder then stays a plain token, as in the reference).
  Edit,
};

// The template an edit model's pipeline uses. Throws canvas::Error for a text-to-image model.
EditPromptTemplate edit_prompt_template(QwenImagePipelineKind kind);

class QwenImageEditPromptEncoder {
 public:
  // Tokens of the template's system part, which the encoder sees and the embedding drops.
  static constexpr int64_t kTemplateTokens = 64;

  // `config` is the text encoder's whole config.json (special token ids, spatial_merge_size); `gate`
  // streams the text encoder's layers when the memory plan does not keep them on the device. The tokenizer
  // and the text encoder must outlive the encoder.
  QwenImageEditPromptEncoder(EditPromptTemplate prompt_template, const Qwen2Tokenizer& tokenizer,
                             const Qwen2_5_VLTextModel& text_encoder, const Qwen2_5_VLConfig& config,
                             nn::BlockGate* gate = nullptr, TextPositions positions = TextPositions::MRope);

  // The templated prompt's ids as the text encoder sees them for pictures of these grids (what the
  // reference's processor returns as input_ids). Throws canvas::Error for more pictures than the template
  // holds.
  std::vector<int32_t> template_token_ids(const std::string& prompt,
                                          const std::vector<std::array<int64_t, 3>>& image_grid_thw) const;

  // `images`: the vision tower's embeddings of the pictures and their grids; empty for none (the reference's
  // image=None). Returns embeds [1, L, hidden] in `activation_dtype` (L = tokens after the template's
  // system part, pictures' tokens included), a mask of ones, the whole templated ids, truncated_tokens 0.
  PromptEmbedding encode(const std::string& prompt, const Qwen2_5_VLImageEmbeds& images,
                         DType activation_dtype = DType::F32) const;

 private:
  EditPromptTemplate prompt_template_;
  const Qwen2Tokenizer& tokenizer_;
  const Qwen2_5_VLTextModel& text_encoder_;
  Qwen2_5_VLConfig config_;
  nn::BlockGate* gate_;
  TextPositions positions_;
};

}  // namespace canvas
