#include "pipeline/edit_prompt_encoder.h"

#include <string_view>

namespace canvas {

namespace {

// The edit pipelines' prompt_template_encode around "{}"; both pipelines share it, the older one with its
// single picture's placeholder inside.
constexpr std::string_view kTemplatePrefix =
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a "
    "new image that meets the user's requirements while maintaining consistency with the original input "
    "where appropriate.<|im_end|>\n<|im_start|>user\n";
constexpr std::string_view kTemplateSuffix = "<|im_end|>\n<|im_start|>assistant\n";
constexpr std::string_view kPicturePlaceholder = "<|vision_start|><|image_pad|><|vision_end|>";

}  // namespace

EditPromptTemplate edit_prompt_template(QwenImagePipelineKind kind) {
  check(kind != QwenImagePipelineKind::TextToImage, "a text-to-image model has no edit prompt template");
  return kind == QwenImagePipelineKind::EditPlus ? EditPromptTemplate::EditPlus : EditPromptTemplate::Edit;
}

QwenImageEditPromptEncoder::QwenImageEditPromptEncoder(EditPromptTemplate prompt_template,
                                                       const Qwen2Tokenizer& tokenizer,
                                                       const Qwen2_5_VLTextModel& text_encoder,
                                                       const Qwen2_5_VLConfig& config, nn::BlockGate* gate,
                                                       TextPositions positions)
    : prompt_template_(prompt_template),
      tokenizer_(tokenizer),
      text_encoder_(text_encoder),
      config_(config),
      gate_(gate),
      positions_(positions) {
  // The template names the placeholder by its text, the text encoder knows it by its id.
  check(tokenizer.token_to_id("<|image_pad|>") == config.image_token_id,
        "the tokenizer's <|image_pad|> is id " + std::to_string(tokenizer.token_to_id("<|image_pad|>")) +
            " but the text encoder's image_token_id is " + std::to_string(config.image_token_id) +
            "; the tokenizer and the text encoder are from different models");
}

std::vector<int32_t> QwenImageEditPromptEncoder::template_token_ids(
    const std::string& prompt, const std::vector<std::array<int64_t, 3>>& image_grid_thw) const {
  const size_t pictures = image_grid_thw.size();
  std::string pictures_text;
  if (prompt_template_ == EditPromptTemplate::EditPlus) {
    for (size_t i = 0; i < pictures; ++i) {
      pictures_text += "Picture " + std::to_string(i + 1) + ": " + std::string(kPicturePlaceholder);
    }
  } else {
    check(pictures <= 1, "the Qwen-Image-Edit prompt template holds one picture, got " +
                             std::to_string(pictures) + "; Qwen-Image-Edit-2509 and later take several");
    pictures_text = kPicturePlaceholder;
  }
  std::vector<int32_t> ids =
      tokenizer_.encode(std::string(kTemplatePrefix) + pictures_text + prompt + std::string(kTemplateSuffix));
  // Without pictures the processor leaves the text alone (the Edit template's placeholder stays one token).
  if (pictures == 0) return ids;
  return expand_image_tokens(ids, image_grid_thw, config_);
}

PromptEmbedding QwenImageEditPromptEncoder::encode(const std::string& prompt,
                                                   const Qwen2_5_VLImageEmbeds& images,
                                                   DType activation_dtype) const {
  std::vector<int32_t> ids = template_token_ids(prompt, images.grid_thw);
  const Tensor hidden =
      forward_text_with_images(text_encoder_, config_, ids, images, activation_dtype, gate_, positions_);
  return drop_template_tokens(hidden, std::move(ids), kTemplateTokens);
}

}  // namespace canvas
