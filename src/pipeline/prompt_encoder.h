// Qwen-Image's prompt encoding (QwenImagePipeline._get_qwen_prompt_embeds): the prompt is wrapped in a
// chat template, run through the text encoder, and the hidden states of the template's system part
// are dropped.
#pragma once

#include <string>

#include "models/qwen2_5_vl_text.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace canvas {

struct PromptEmbedding {
  Tensor embeds;                            // [1, L, hidden]
  Tensor mask;                              // [1, L] i64, 1 for every kept token
  std::vector<int32_t> template_token_ids;  // the whole templated prompt as the encoder saw it
  int64_t truncated_tokens = 0;             // tokens past max_sequence_length, cut as the reference cuts
};

// What a prompt encoder returns for a templated prompt whose hidden states [1, L, hidden] the text encoder
// gave for `template_token_ids`: the states after the template's first `template_tokens` (its system part,
// which the pipelines drop) and a mask of ones.
PromptEmbedding drop_template_tokens(const Tensor& hidden_states, std::vector<int32_t> template_token_ids,
                                     int64_t template_tokens);

class QwenImagePromptEncoder {
 public:
  static constexpr int64_t kDefaultMaxSequenceLength = 512;
  // Tokens of the template's system part, which the encoder sees and the embedding drops.
  static constexpr int64_t kTemplateTokens = 34;

  // `gate` streams the encoder's layers when the memory plan does not keep them on the device.
  QwenImagePromptEncoder(const Qwen2Tokenizer& tokenizer, const Qwen2_5_VLTextModel& text_encoder,
                         nn::BlockGate* gate = nullptr)
      : tokenizer_(tokenizer), text_encoder_(text_encoder), gate_(gate) {}

  // Keeps at most `max_sequence_length` tokens after the template's system part.
  PromptEmbedding encode(const std::string& prompt, int64_t max_sequence_length = kDefaultMaxSequenceLength,
                         DType activation_dtype = DType::F32) const;

 private:
  const Qwen2Tokenizer& tokenizer_;
  const Qwen2_5_VLTextModel& text_encoder_;
  nn::BlockGate* gate_;
};

}  // namespace canvas
