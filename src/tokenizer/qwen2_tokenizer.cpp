#include "tokenizer/qwen2_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace canvas {

namespace {

using Json = nlohmann::json;

Json read_json(const std::filesystem::path& file) {
  check(std::filesystem::is_regular_file(file), file.string() + ": file not found");
  std::ifstream stream(file, std::ios::binary);
  check(stream.good(), file.string() + ": cannot open file");
  try {
    return Json::parse(stream);
  } catch (const Json::exception& error) {
    throw Error(file.string() + ": malformed JSON: " + error.what());
  }
}

int32_t parse_id(const Json& value, const std::string& what) {
  check(value.is_number_integer(), what + " is not an integer");
  const auto id = value.get<int64_t>();
  check(id >= 0 && id <= std::numeric_limits<int32_t>::max(), what + " is out of range");
  return static_cast<int32_t>(id);
}

bool flag(const Json& object, const char* key, bool fallback) {
  const auto found = object.find(key);
  return found == object.end() || found->is_null() ? fallback : found->get<bool>();
}

std::string string_field(const Json& object, const char* key) {
  const auto found = object.find(key);
  return found == object.end() || found->is_null() ? std::string() : found->get<std::string>();
}

// Added tokens as both tokenizer.json's "added_tokens" entries and tokenizer_config.json's
// "added_tokens_decoder" values spell them; special tokens are not normalized unless stated.
Qwen2Tokenizer::AddedToken parse_added_token(const Json& entry, int32_t id) {
  Qwen2Tokenizer::AddedToken token;
  token.content = entry.at("content").get<std::string>();
  token.id = id;
  token.single_word = flag(entry, "single_word", false);
  token.lstrip = flag(entry, "lstrip", false);
  token.rstrip = flag(entry, "rstrip", false);
  token.normalized = flag(entry, "normalized", !flag(entry, "special", false));
  return token;
}

std::unordered_map<std::string, int32_t> parse_vocab(const Json& vocab) {
  check(vocab.is_object(), "the vocabulary is not a JSON object");
  std::unordered_map<std::string, int32_t> parsed;
  parsed.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items())
    parsed.emplace(token, parse_id(id, "the id of '" + token + "'"));
  return parsed;
}

std::pair<std::string, std::string> split_merge_line(std::string_view line, size_t rank) {
  const size_t space = line.find(' ');
  check(space != std::string_view::npos && line.find(' ', space + 1) == std::string_view::npos,
        "merge " + std::to_string(rank) + " ('" + std::string(line) +
            "') is not two tokens separated by a space");
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

// The pipeline pieces this implementation reproduces; anything else would silently give other ids.
void check_pipeline(const Json& root) {
  const Json normalizer = root.value("normalizer", Json());
  check(normalizer.is_null() || string_field(normalizer, "type") == "NFC",
        "normalizer " + normalizer.dump() + " is not supported (expected NFC or none)");

  const Json pre_tokenizer = root.value("pre_tokenizer", Json());
  const auto is_qwen2_pre_tokenizer = [&] {
    if (string_field(pre_tokenizer, "type") != "Sequence") return false;
    const Json& steps = pre_tokenizer.at("pretokenizers");
    if (!steps.is_array() || steps.size() != 2) return false;
    const Json& split = steps[0];
    const Json& byte_level = steps[1];
    return string_field(split, "type") == "Split" &&
           split.at("pattern").value("Regex", std::string()) == unicode::kQwen2PretokenizerPattern &&
           string_field(split, "behavior") == "Isolated" && !flag(split, "invert", false) &&
           string_field(byte_level, "type") == "ByteLevel" && !flag(byte_level, "add_prefix_space", true) &&
           !flag(byte_level, "use_regex", true);
  };
  check(pre_tokenizer.is_object() && is_qwen2_pre_tokenizer(),
        "pre_tokenizer is not the Qwen2 one (Split on the Qwen2 regex, then ByteLevel without regex)");

  const Json decoder = root.value("decoder", Json());
  check(decoder.is_null() || string_field(decoder, "type") == "ByteLevel",
        "decoder " + decoder.dump() + " is not supported (expected ByteLevel)");
}

Qwen2Tokenizer::Definition parse_tokenizer_json(const Json& root) {
  check(root.is_object() && root.contains("model"), "there is no \"model\"");
  const Json& model = root.at("model");
  const std::string model_type = string_field(model, "type");
  check(model_type == "BPE", "model type '" + model_type + "' is not supported (expected BPE)");
  check(!flag(model, "byte_fallback", false), "BPE byte_fallback is not supported");
  check(model.value("dropout", Json()).is_null(), "BPE dropout is not supported");
  check(string_field(model, "continuing_subword_prefix").empty() &&
            string_field(model, "end_of_word_suffix").empty(),
        "BPE subword prefixes and suffixes are not supported");
  check_pipeline(root);

  Qwen2Tokenizer::Definition definition;
  definition.vocab = parse_vocab(model.at("vocab"));
  definition.ignore_merges = flag(model, "ignore_merges", false);
  definition.nfc = !root.value("normalizer", Json()).is_null();
  const Json& merges = model.at("merges");
  check(merges.is_array(), "model.merges is not an array");
  definition.merges.reserve(merges.size());
  for (const Json& merge : merges) {
    if (merge.is_string()) {
      definition.merges.push_back(split_merge_line(merge.get<std::string>(), definition.merges.size()));
    } else {
      check(merge.is_array() && merge.size() == 2,
            "merge " + std::to_string(definition.merges.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
      definition.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    }
  }
  for (const Json& entry : root.value("added_tokens", Json::array())) {
    definition.added_tokens.push_back(parse_added_token(entry, parse_id(entry.at("id"), "added token id")));
  }
  return definition;
}

// Runs `parse` and prefixes any failure with the file it concerns.
template <typename Parse>
auto with_file_context(const std::filesystem::path& file, Parse&& parse) {
  try {
    return parse();
  } catch (const Json::exception& error) {
    throw Error(file.string() + ": unexpected content: " + error.what());
  } catch (const Error& error) {
    const std::string message = error.what();
    if (message.starts_with(file.string())) throw;
    throw Error(file.string() + ": " + message);
  }
}

uint64_t pair_key(int32_t left_id, int32_t right_id) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left_id)) << 32) | static_cast<uint32_t>(right_id);
}

}  // namespace

Qwen2Tokenizer Qwen2Tokenizer::from_tokenizer_json(const std::filesystem::path& file) {
  const Json root = read_json(file);
  return with_file_context(file, [&] { return from_definition(parse_tokenizer_json(root), file.string()); });
}

Qwen2Tokenizer Qwen2Tokenizer::from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                                     const std::filesystem::path& merges_txt,
                                                     const std::filesystem::path& tokenizer_config_json) {
  Definition definition;
  const Json vocab = read_json(vocab_json);
  definition.vocab = with_file_context(vocab_json, [&] { return parse_vocab(vocab); });

  check(std::filesystem::is_regular_file(merges_txt), merges_txt.string() + ": file not found");
  std::ifstream merges_stream(merges_txt, std::ios::binary);
  check(merges_stream.good(), merges_txt.string() + ": cannot open file");
  with_file_context(merges_txt, [&] {
    std::string line;
    while (std::getline(merges_stream, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      // The header line ("#version: 0.2") and the empty line a trailing newline leaves are not merges.
      if (line.empty() || line.starts_with("#version")) continue;
      definition.merges.push_back(split_merge_line(line, definition.merges.size()));
    }
  });

  if (!tokenizer_config_json.empty()) {
    const Json config = read_json(tokenizer_config_json);
    with_file_context(tokenizer_config_json, [&] {
      const Json added_tokens = config.value("added_tokens_decoder", Json::object());
      for (const auto& [id, entry] : added_tokens.items()) {
        int64_t parsed_id = -1;
        try {
          parsed_id = std::stoll(id);
        } catch (const std::exception&) {
          throw Error("added_tokens_decoder key '" + id + "' is not an id");
        }
        definition.added_tokens.push_back(
            parse_added_token(entry, parse_id(Json(parsed_id), "added token id")));
      }
    });
  }
  const std::string source = vocab_json.string() + " + " + merges_txt.string();
  return from_definition(std::move(definition), source);
}

Qwen2Tokenizer Qwen2Tokenizer::from_folder(const std::filesystem::path& dir) {
  if (std::filesystem::is_regular_file(dir / "tokenizer.json"))
    return from_tokenizer_json(dir / "tokenizer.json");
  check(std::filesystem::is_regular_file(dir / "vocab.json") &&
            std::filesystem::is_regular_file(dir / "merges.txt"),
        dir.string() + ": no tokenizer.json, nor vocab.json and merges.txt");
  const auto config = dir / "tokenizer_config.json";
  return from_vocab_and_merges(dir / "vocab.json", dir / "merges.txt",
                               std::filesystem::is_regular_file(config) ? config : std::filesystem::path());
}

Qwen2Tokenizer Qwen2Tokenizer::from_definition(Definition definition, const std::string& source) {
  const auto fail_unless = [&](bool condition, const std::string& message) {
    check(condition, source + ": " + message);
  };
  Qwen2Tokenizer tokenizer;
  tokenizer.nfc_ = definition.nfc;
  tokenizer.ignore_merges_ = definition.ignore_merges;

  for (const auto& [token, id] : definition.vocab) {
    fail_unless(id >= 0, "token '" + token + "' has a negative id");
    // The byte-level decoder passes a token through as it is when it is not all in the alphabet.
    tokenizer.token_bytes_.emplace(id, unicode::from_byte_level(token).value_or(token));
  }
  for (int byte = 0; byte < 256; ++byte) {
    const auto found = definition.vocab.find(unicode::to_byte_level(std::string(1, static_cast<char>(byte))));
    fail_unless(found != definition.vocab.end(), "the vocabulary has no token for byte " +
                                                     std::to_string(byte) +
                                                     ", so some text could not be encoded");
    tokenizer.byte_token_ids_[byte] = found->second;
  }

  tokenizer.merges_.reserve(definition.merges.size());
  for (size_t rank = 0; rank < definition.merges.size(); ++rank) {
    const auto& [left, right] = definition.merges[rank];
    const auto left_id = definition.vocab.find(left);
    const auto right_id = definition.vocab.find(right);
    const auto merged_id = definition.vocab.find(left + right);
    fail_unless(left_id != definition.vocab.end() && right_id != definition.vocab.end() &&
                    merged_id != definition.vocab.end(),
                "merge " + std::to_string(rank) + " ('" + left + " " + right +
                    "') uses a token not in the vocabulary");
    // A repeated pair keeps its last rank, as Hugging Face's map does.
    tokenizer.merges_.insert_or_assign(pair_key(left_id->second, right_id->second),
                                       Merge{static_cast<int32_t>(rank), merged_id->second});
  }

  tokenizer.token_ids_ = definition.vocab;
  for (AddedToken& token : definition.added_tokens) {
    // Empty added tokens can never be matched; Hugging Face ignores them too.
    if (token.content.empty()) continue;
    tokenizer.token_ids_.insert_or_assign(token.content, token.id);
    tokenizer.token_bytes_.insert_or_assign(token.id,
                                            unicode::from_byte_level(token.content).value_or(token.content));
    const size_t index = tokenizer.added_tokens_.size();
    if (token.normalized) {
      const std::string pattern =
          tokenizer.nfc_ ? unicode::nfc(unicode::replace_invalid_utf8(token.content)) : token.content;
      tokenizer.normalized_patterns_.push_back({pattern, index});
    } else {
      tokenizer.raw_patterns_.push_back({token.content, index});
    }
    tokenizer.added_tokens_.push_back(std::move(token));
  }
  if (tokenizer.ignore_merges_) tokenizer.model_vocab_ = std::move(definition.vocab);
  return tokenizer;
}

std::vector<Qwen2Tokenizer::Segment> Qwen2Tokenizer::split_on_added_tokens(
    std::string_view text, const std::vector<AddedTokenPattern>& patterns) const {
  if (patterns.empty()) return {Segment{text}};

  // Leftmost-longest, non-overlapping occurrences, as Hugging Face's Aho-Corasick search finds them.
  struct Occurrence {
    size_t begin;
    size_t end;
    size_t token_index;
  };
  std::vector<Occurrence> occurrences;
  for (size_t position = 0; position < text.size();) {
    const AddedTokenPattern* longest = nullptr;
    for (const AddedTokenPattern& pattern : patterns) {
      if (text.substr(position).starts_with(pattern.text) &&
          (longest == nullptr || pattern.text.size() > longest->text.size())) {
        longest = &pattern;
      }
    }
    if (longest == nullptr) {
      ++position;
      continue;
    }
    occurrences.push_back({position, position + longest->text.size(), longest->token_index});
    position += longest->text.size();
  }

  const auto is_continuation = [&](size_t position) {
    return (static_cast<unsigned char>(text[position]) & 0xC0) == 0x80;
  };
  const auto previous_code_point_begin = [&](size_t end) {
    size_t begin = end - 1;
    while (begin > 0 && is_continuation(begin)) --begin;
    return begin;
  };
  const auto next_code_point_end = [&](size_t begin) {
    size_t end = begin + 1;
    while (end < text.size() && is_continuation(end)) ++end;
    return end;
  };
  const auto code_point_at = [&](size_t begin, size_t end) {
    return unicode::decode_utf8(text.substr(begin, end - begin)).front();
  };

  // Mirrors Hugging Face's AddedVocabulary::find_matches, overlap quirks included.
  std::vector<Segment> segments;
  size_t covered = 0;
  for (const Occurrence& occurrence : occurrences) {
    const AddedToken& token = added_tokens_[occurrence.token_index];
    size_t begin = occurrence.begin;
    size_t end = occurrence.end;
    if (token.single_word) {
      const bool word_before =
          begin > 0 && unicode::is_word_char(code_point_at(previous_code_point_begin(begin), begin));
      const bool word_after =
          end < text.size() && unicode::is_word_char(code_point_at(end, next_code_point_end(end)));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t stripped = begin;
      while (stripped > 0) {
        const size_t previous = previous_code_point_begin(stripped);
        if (!unicode::is_whitespace(code_point_at(previous, stripped))) break;
        stripped = previous;
      }
      // Whitespace already inside the previous segment stays there.
      begin = std::max(stripped, covered);
    }
    if (token.rstrip) {
      while (end < text.size() && unicode::is_whitespace(code_point_at(end, next_code_point_end(end)))) {
        end = next_code_point_end(end);
      }
    }
    if (covered < begin) segments.push_back({text.substr(covered, begin - covered)});
    segments.push_back(
        {text.substr(begin, end - begin), static_cast<std::ptrdiff_t>(occurrence.token_index)});
    covered = end;
  }
  if (covered < text.size()) segments.push_back({text.substr(covered)});
  return segments;
}

void Qwen2Tokenizer::append_bpe_ids(std::string_view pretoken, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    const auto whole = model_vocab_.find(unicode::to_byte_level(pretoken));
    if (whole != model_vocab_.end()) {
      ids.push_back(whole->second);
      return;
    }
  }

  // A doubly linked list of symbols, one per byte to start with; a merge folds the right symbol into
  // the left one, so positions stay in text order.
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t previous;
    int32_t next;
  };
  const auto size = static_cast<int32_t>(pretoken.size());
  std::vector<Symbol> symbols(pretoken.size());
  for (int32_t i = 0; i < size; ++i) {
    symbols[i] = {byte_token_ids_[static_cast<unsigned char>(pretoken[i])], i - 1, i + 1 < size ? i + 1 : -1};
  }

  // Candidates come out lowest rank first, and leftmost first among equal ranks (the same pair in
  // several places). A candidate is stale when either side has changed since it was queued.
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> candidates;
  const auto queue_pair = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int32_t left_id = symbols[left].id;
    const int32_t right_id = symbols[symbols[left].next].id;
    const auto merge = merges_.find(pair_key(left_id, right_id));
    if (merge != merges_.end()) candidates.push({merge->second.rank, left, left_id, right_id});
  };
  for (int32_t i = 0; i + 1 < size; ++i) queue_pair(i);

  while (!candidates.empty()) {
    const Candidate candidate = candidates.top();
    candidates.pop();
    Symbol& left = symbols[candidate.left];
    if (left.id != candidate.left_id || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != candidate.right_id) continue;

    left.id = merges_.at(pair_key(candidate.left_id, candidate.right_id)).merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].previous = candidate.left;
    right.id = -1;
    queue_pair(left.previous);
    queue_pair(candidate.left);
  }

  for (int32_t i = size > 0 ? 0 : -1; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void Qwen2Tokenizer::append_normalized_text_ids(std::string_view text, std::vector<int32_t>& ids) const {
  for (const Segment& segment : split_on_added_tokens(text, normalized_patterns_)) {
    if (segment.token_index >= 0) {
      ids.push_back(added_tokens_[segment.token_index].id);
      continue;
    }
    for (std::string_view pretoken : unicode::split_qwen2_pretokens(segment.text))
      append_bpe_ids(pretoken, ids);
  }
}

std::vector<int32_t> Qwen2Tokenizer::encode(std::string_view utf8_text) const {
  // BPE positions are 32-bit.
  check(utf8_text.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
        "encode: text of " + std::to_string(utf8_text.size()) + " bytes is too long");
  const std::string text = unicode::replace_invalid_utf8(utf8_text);
  std::vector<int32_t> ids;
  for (const Segment& segment : split_on_added_tokens(text, raw_patterns_)) {
    if (segment.token_index >= 0) {
      ids.push_back(added_tokens_[segment.token_index].id);
    } else if (nfc_) {
      append_normalized_text_ids(unicode::nfc(segment.text), ids);
    } else {
      append_normalized_text_ids(segment.text, ids);
    }
  }
  return ids;
}

std::string Qwen2Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    const auto found = token_bytes_.find(id);
    check(found != token_bytes_.end(),
          "decode: token id " + std::to_string(id) + " is not in the vocabulary");
    bytes += found->second;
  }
  return unicode::replace_invalid_utf8(bytes);
}

int32_t Qwen2Tokenizer::token_to_id(std::string_view token) const {
  const auto found = token_ids_.find(std::string(token));
  check(found != token_ids_.end(), "token '" + std::string(token) + "' is not in the vocabulary");
  return found->second;
}

int64_t Qwen2Tokenizer::vocab_size() const {
  return static_cast<int64_t>(token_ids_.size());
}

}  // namespace canvas
