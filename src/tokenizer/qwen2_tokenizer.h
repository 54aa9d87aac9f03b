// The Qwen2 byte-level BPE tokenizer (the text encoder's tokenizer in Qwen-Image), giving the same
// ids as Hugging Face `tokenizers` does for the same tokenizer.json.
//
// Encoding: added tokens are cut out of the raw text first, the rest is NFC-normalized, split by
// the Qwen2 pre-tokenizer regex, mapped to the GPT-2 byte-level alphabet and merged by BPE rank.
// Input that is not valid UTF-8 (which HF cannot receive, as it takes Rust strings) has each
// ill-formed sequence replaced by U+FFFD first, as Python's errors="replace" would.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace canvas {

class Qwen2Tokenizer {
 public:
  // Reads a Hugging Face tokenizer.json (model.type BPE, byte-level).
  static Qwen2Tokenizer from_tokenizer_json(const std::filesystem::path& file);
  // Reads vocab.json + merges.txt; added/special tokens come from tokenizer_config.json's
  // "added_tokens_decoder" when that file is given (may be an empty path).
  static Qwen2Tokenizer from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                              const std::filesystem::path& merges_txt,
                                              const std::filesystem::path& tokenizer_config_json);
  // A tokenizer folder (as diffusers writes `tokenizer/`): tokenizer.json if present, else
  // vocab.json + merges.txt (+ tokenizer_config.json when present).
  static Qwen2Tokenizer from_folder(const std::filesystem::path& dir);

  // No BOS/EOS is added (Qwen2 adds none).
  std::vector<int32_t> encode(std::string_view utf8_text) const;
  // Concatenates the tokens' bytes, special tokens included; ill-formed UTF-8 in the result (from
  // a sequence cut inside a character) becomes U+FFFD. Throws canvas::Error on an unknown id.
  std::string decode(std::span<const int32_t> ids) const;
  // Throws canvas::Error if the token is not in the vocabulary.
  int32_t token_to_id(std::string_view token) const;
  // Distinct tokens, added tokens included.
  int64_t vocab_size() const;

  // A token that is matched in the text before BPE and maps to one id.
  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool single_word = false;  // only matches when not inside a word
    bool lstrip = false;       // swallows the whitespace before it
    bool rstrip = false;       // swallows the whitespace after it
    bool normalized = false;   // matched in the normalized text rather than the raw text
  };

  // What both file layouts provide, in tokenizer.json's terms.
  struct Definition {
    std::unordered_map<std::string, int32_t> vocab;           // byte-level token -> id
    std::vector<std::pair<std::string, std::string>> merges;  // in rank order
    std::vector<AddedToken> added_tokens;
    bool nfc = true;
    bool ignore_merges = false;  // a pre-token found whole in the vocabulary skips BPE
  };
  // Validates and indexes a definition; `source` names it in error messages.
  static Qwen2Tokenizer from_definition(Definition definition, const std::string& source);

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  // An added token's text as it is searched for, in the raw or the normalized text.
  struct AddedTokenPattern {
    std::string text;
    size_t token_index;
  };
  // A stretch of text, or (token_index set) an added token found there.
  struct Segment {
    std::string_view text;
    std::ptrdiff_t token_index = -1;
  };

  Qwen2Tokenizer() = default;

  std::vector<Segment> split_on_added_tokens(std::string_view text,
                                             const std::vector<AddedTokenPattern>& patterns) const;
  void append_normalized_text_ids(std::string_view text, std::vector<int32_t>& ids) const;
  void append_bpe_ids(std::string_view pretoken, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> token_ids_;    // model vocabulary and added tokens
  std::unordered_map<std::string, int32_t> model_vocab_;  // kept only for ignore_merges
  std::unordered_map<int32_t, std::string> token_bytes_;  // what each id decodes to
  std::unordered_map<uint64_t, Merge> merges_;            // keyed by the two ids, left in the high half
  std::array<int32_t, 256> byte_token_ids_{};
  std::vector<AddedToken> added_tokens_;
  std::vector<AddedTokenPattern> raw_patterns_;
  std::vector<AddedTokenPattern> normalized_patterns_;
  bool nfc_ = true;
  bool ignore_merges_ = false;
};

}  // namespace canvas
