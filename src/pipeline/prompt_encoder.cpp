#include "pipeline/prompt_encoder.h"

#include <algorithm>

namespace canvas {

namespace {

// The pipeline's prompt_template_encode and prompt_template_encode_start_idx.
constexpr std::string_view kTemplatePrefix =
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial "
    "relationships of the objects and background:<|im_end|>\n<|im_start|>user\n";
constexpr std::string_view kTemplateSuffix = "<|im_end|>\n<|im_start|>assistant\n";
constexpr int64_t kDroppedTemplateTokens = QwenImagePromptEncoder::kTemplateTokens;
// The pipeline's tokenizer_max_length: the tokenizer truncates to this plus the dropped tokens.
constexpr int64_t kTokenizerMaxLength = 1024;

}  // namespace

PromptEmbedding drop_template_tokens(const Tensor& hidden_states, std::vector<int32_t> template_token_ids,
                                     int64_t template_tokens) {
  const int64_t length = static_cast<int64_t>(template_token_ids.size());
  check(hidden_states.ndim() == 3 && hidden_states.dim(0) == 1 && hidden_states.dim(1) == length,
        "the text encoder's hidden states " + shape_str(hidden_states.shape()) + " are not [1, " +
            std::to_string(length) + ", hidden] for the templated prompt's tokens");
  check(length > template_tokens, "the templated prompt has only " + std::to_string(length) +
                                      " tokens, not more than the template's " +
                                      std::to_string(template_tokens) + "; is this the Qwen2 tokenizer?");
  const int64_t kept = length - template_tokens;
  PromptEmbedding result;
  result.embeds = hidden_states.slice(1, template_tokens, length).contiguous();
  result.mask = Tensor::from_ints(std::vector<int64_t>(static_cast<size_t>(kept), 1), {1, kept});
  result.template_token_ids = std::move(template_token_ids);
  return result;
}

PromptEmbedding QwenImagePromptEncoder::encode(const std::string& prompt, int64_t max_sequence_length,
                                               DType activation_dtype) const {
  check(max_sequence_length > 0 && max_sequence_length <= kTokenizerMaxLength,
        "max_sequence_length must be in 1.." + std::to_string(kTokenizerMaxLength) + ", got " +
            std::to_string(max_sequence_length));
  std::string templated = std::string(kTemplatePrefix) + prompt + std::string(kTemplateSuffix);
  std::vector<int32_t> ids = tokenizer_.encode(templated);
  check(static_cast<int64_t>(ids.size()) > kDroppedTemplateTokens,
        "the prompt template tokenized to only " + std::to_string(ids.size()) +
            " tokens; is this the Qwen2 tokenizer?");
  // The encoder is causal, so hidden states of kept tokens do not depend on the tokens cut after them:
  // truncating before encoding gives the reference's values without encoding up to 1058 tokens.
  const int64_t prompt_tokens = static_cast<int64_t>(ids.size()) - kDroppedTemplateTokens;
  const int64_t kept = std::min<int64_t>(prompt_tokens, max_sequence_length);
  ids.resize(static_cast<size_t>(kDroppedTemplateTokens + kept));

  std::vector<int64_t> id_values(ids.begin(), ids.end());
  int64_t length = static_cast<int64_t>(ids.size());
  Tensor input_ids = Tensor::from_ints(id_values, {1, length});
  std::vector<int64_t> ones(static_cast<size_t>(length), 1);
  Tensor attention_mask = Tensor::from_ints(ones, {1, length});

  Tensor hidden = text_encoder_.forward(input_ids, attention_mask, activation_dtype, gate_);
  PromptEmbedding result = drop_template_tokens(hidden, std::move(ids), kDroppedTemplateTokens);
  result.truncated_tokens = prompt_tokens - kept;
  return result;
}

}  // namespace canvas
