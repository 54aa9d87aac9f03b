// Sequence parallelism for the joint attention, Ulysses style (DeepSpeed-Ulysses; diffusers'
// ContextParallelConfig(ulysses_degree=N)): each device holds a contiguous share of the text tokens and
// of the image tokens through every per-token layer. Around the attention, an all-to-all hands each
// device every token's queries, keys and values for its share of the heads; it attends over the whole
// sequence, and a second all-to-all returns each token's output, all heads, to the device that holds it.
#pragma once

#include <vector>

#include "backend/communicator.h"
#include "models/qwen_image_transformer.h"

namespace canvas {

// One device's tokens: [text_begin, text_end) of the text and [image_begin, image_end) of the image.
struct TokenShare {
  int64_t text_begin = 0, text_end = 0;
  int64_t image_begin = 0, image_end = 0;
  int64_t text_tokens() const { return text_end - text_begin; }
  int64_t image_tokens() const { return image_end - image_begin; }
  int64_t tokens() const { return text_tokens() + image_tokens(); }
};

// Contiguous, near-equal shares of the text and of the image tokens, one per device.
std::vector<TokenShare> share_tokens(int64_t text_tokens, int64_t image_tokens, int devices);

// Every device's attention output [B, its tokens (text first), heads * head_dim] from every device's
// projections of its own tokens ([B, its tokens, heads, head_dim], text first). joint_key_masks: each
// device's copy of the key mask over the whole [text, image] sequence (undefined when all keys count).
// The heads must divide evenly among the devices.
std::vector<Tensor> ulysses_attention(Communicator& communicator,
                                      const std::vector<JointProjections>& projections,
                                      const std::vector<TokenShare>& shares,
                                      const std::vector<Tensor>& joint_key_masks);

}  // namespace canvas
