// The tokenizer on any prompt text (prompts come from HTTP requests), ill-formed UTF-8 included, with the
// tiny model's tokenizer.json (the Qwen2 vocabulary and merges). Its ids must decode, and text that
// decodes from ids must encode again.
#include <cstdint>
#include <string_view>

#include "tokenizer/qwen2_tokenizer.h"

#ifndef CANVAS_SOURCE_DIR
#error "CANVAS_SOURCE_DIR names the checkout holding models/tiny-qwen-image"
#endif

namespace {
const canvas::Qwen2Tokenizer* tokenizer = nullptr;
}  // namespace

// Loaded once, before fuzzing starts, so that its seconds do not count against the first input's time limit.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static const canvas::Qwen2Tokenizer loaded = canvas::Qwen2Tokenizer::from_tokenizer_json(
      CANVAS_SOURCE_DIR "/models/tiny-qwen-image/tokenizer/tokenizer.json");
  tokenizer = &loaded;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = tokenizer->encode(text);
  const std::string decoded = tokenizer->decode(ids);
  tokenizer->encode(decoded);
  return 0;
}
