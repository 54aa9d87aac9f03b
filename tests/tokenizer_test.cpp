// The Qwen2 tokenizer against Hugging Face `tokenizers`: the committed corpus
// (tools/reference/make_tokenizer_corpus.py) holds the ids it gives for each string, with the tokenizer the
// repository ships (Qwen-Image's: Qwen2's vocabulary and merges, added tokens up to 151664).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "tokenizer/qwen2_tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace canvas {
namespace {

using Json = nlohmann::json;

std::filesystem::path qwen_tokenizer_json() {
  return test::source_path("models/tiny-qwen-image/tokenizer/tokenizer.json");
}

const Qwen2Tokenizer& qwen2() {
  static const Qwen2Tokenizer tokenizer = Qwen2Tokenizer::from_tokenizer_json(qwen_tokenizer_json());
  return tokenizer;
}

struct CorpusEntry {
  std::string text;
  std::vector<int32_t> ids;
};

const std::vector<CorpusEntry>& corpus() {
  static const std::vector<CorpusEntry> entries = [] {
    std::ifstream stream(test::source_path("tests/golden/tokenizer/corpus.json"));
    std::vector<CorpusEntry> parsed;
    for (const Json& entry : Json::parse(stream)) {
      parsed.push_back({entry.at("text").get<std::string>(), entry.at("ids").get<std::vector<int32_t>>()});
    }
    return parsed;
  }();
  return entries;
}

Json read_json(const std::filesystem::path& file) {
  std::ifstream stream(file);
  return Json::parse(stream);
}

void write_file(const std::filesystem::path& file, std::string_view content) {
  std::ofstream stream(file, std::ios::binary);
  stream << content;
}

// The text with control characters escaped and long texts cut, for failure messages.
std::string printable(std::string_view text) {
  constexpr size_t kShownBytes = 200;
  std::string shown;
  for (char byte : text.substr(0, kShownBytes)) {
    if (static_cast<unsigned char>(byte) < 0x20) {
      std::ostringstream escaped;
      escaped << "\\x" << std::hex << std::setw(2) << std::setfill('0') << static_cast<int>(byte);
      shown += escaped.str();
    } else {
      shown += byte;
    }
  }
  if (text.size() > kShownBytes) shown += "... (" + std::to_string(text.size()) + " bytes)";
  return "\"" + shown + "\"";
}

// Encodings of every `stride`-th corpus text, and of the special-token strings.
void expect_same_ids(const Qwen2Tokenizer& tokenizer, const Qwen2Tokenizer& reference, size_t stride) {
  for (size_t i = 0; i < corpus().size(); i += stride) {
    EXPECT_EQ(tokenizer.encode(corpus()[i].text), reference.encode(corpus()[i].text))
        << "text " << printable(corpus()[i].text);
  }
  const std::string chat = "<|im_start|>user\nA red fox<|im_end|>\n<|im_start|>assistant\n<think>";
  EXPECT_EQ(tokenizer.encode(chat), reference.encode(chat));
}

TEST(TokenizerParity, MatchesHuggingFaceOnEveryCorpusString) {
  ASSERT_GE(corpus().size(), 250u);
  size_t equal = 0;
  for (const CorpusEntry& entry : corpus()) {
    const std::vector<int32_t> ids = qwen2().encode(entry.text);
    if (ids == entry.ids) {
      ++equal;
      continue;
    }
    size_t first_difference = 0;
    while (first_difference < ids.size() && first_difference < entry.ids.size() &&
           ids[first_difference] == entry.ids[first_difference]) {
      ++first_difference;
    }
    const auto id_at = [](const std::vector<int32_t>& list, size_t index) {
      return index < list.size() ? std::to_string(list[index]) : std::string("(end)");
    };
    ADD_FAILURE() << "text " << printable(entry.text) << ": first difference at token " << first_difference
                  << ", expected " << id_at(entry.ids, first_difference) << ", got "
                  << id_at(ids, first_difference) << " (" << entry.ids.size() << " vs " << ids.size()
                  << " tokens)";
  }
  EXPECT_EQ(equal, corpus().size()) << equal << "/" << corpus().size() << " strings equal";
}

TEST(TokenizerParity, SpecialTokensAreSplitOutOfTheText) {
  EXPECT_EQ(qwen2().encode("<|im_start|>user\nhi<|im_end|>"),
            (std::vector<int32_t>{151644, 872, 198, 6023, 151645}));
  EXPECT_EQ(qwen2().encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  EXPECT_TRUE(qwen2().encode("").empty());
}

TEST(TokenizerRoundTrip, DecodeOfEncodeIsTheNfcText) {
  EXPECT_EQ(qwen2().decode(qwen2().encode("e\xCC\x81"
                                          "cole")),
            "\xC3\xA9"
            "cole");
  for (const CorpusEntry& entry : corpus()) {
    EXPECT_EQ(qwen2().decode(qwen2().encode(entry.text)), unicode::nfc(entry.text))
        << "text " << printable(entry.text);
  }
}

TEST(TokenizerRoundTrip, DecodingHalfACharacterGivesTheReplacementCharacter) {
  // "中" is one token; its first byte alone is an ill-formed sequence.
  const std::vector<int32_t> first_byte = {
      qwen2().token_to_id("\xC3\xA4")};  // byte 0xE4 in the byte-level alphabet
  EXPECT_EQ(qwen2().decode(first_byte), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen2().decode(std::vector<int32_t>{15946}), "\xE4\xB8\xAD");
}

TEST(TokenizerVocabulary, SizeAndTokenLookup) {
  EXPECT_EQ(qwen2().vocab_size(), 151665);
  EXPECT_EQ(qwen2().token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(qwen2().token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(qwen2().token_to_id("<|file_sep|>"), 151664);
  EXPECT_EQ(qwen2().token_to_id("\xC4\xA0"), 220);  // "Ġ", the byte-level space
  test::expect_contains(test::error_of([] { qwen2().token_to_id("no such token"); }), "no such token");
}

TEST(TokenizerInvalidUtf8, IllFormedSequencesBecomeReplacementCharacters) {
  // Expected repairs are what Python's bytes.decode("utf-8", "replace") gives.
  EXPECT_EQ(unicode::replace_invalid_utf8("a\xFF"
                                          "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(unicode::replace_invalid_utf8("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::replace_invalid_utf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(unicode::replace_invalid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(unicode::replace_invalid_utf8("\xC3"), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen2().encode("a\xFF"
                           "b"),
            qwen2().encode("a\xEF\xBF\xBD"
                           "b"));
  EXPECT_EQ(qwen2().encode("<|im_end|>\xC3"), qwen2().encode("<|im_end|>\xEF\xBF\xBD"));
}

TEST(TokenizerInvalidUtf8, FirstIllFormedSequenceIsLocated) {
  EXPECT_EQ(unicode::first_invalid_utf8(""), std::nullopt);
  EXPECT_EQ(unicode::first_invalid_utf8("plain \xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80"), std::nullopt);
  EXPECT_EQ(unicode::first_invalid_utf8("\xFF"), 0u);
  EXPECT_EQ(unicode::first_invalid_utf8("ab\xC3"), 2u);                // cut short
  EXPECT_EQ(unicode::first_invalid_utf8("a\xE0\x80\x80"), 1u);         // overlong
  EXPECT_EQ(unicode::first_invalid_utf8("\xC3\xA9\xED\xA0\x80"), 2u);  // a surrogate
}

TEST(TokenizerAddedTokens, StripAndSingleWordFlagsFollowHuggingFace) {
  // A byte-level vocabulary where each byte's id is its value, one merge, and added tokens with
  // the flags Qwen2's own file leaves off. Expected ids come from `tokenizers` 0.23.3 given the
  // same definition.
  Qwen2Tokenizer::Definition definition;
  const auto& alphabet = unicode::byte_level_alphabet();
  for (int byte = 0; byte < 256; ++byte) {
    std::string token;
    unicode::append_utf8(token, alphabet[byte]);
    definition.vocab.emplace(token, byte);
  }
  definition.vocab.emplace("hi", 256);
  definition.merges.emplace_back("h", "i");
  definition.added_tokens.push_back({.content = "[CLS]", .id = 257});
  definition.added_tokens.push_back(
      {.content = "<mask>", .id = 258, .single_word = true, .lstrip = true, .rstrip = true});
  definition.added_tokens.push_back({.content = "\xC3\xB1u", .id = 259, .normalized = true});  // "ñu"
  const Qwen2Tokenizer tokenizer = Qwen2Tokenizer::from_definition(std::move(definition), "test definition");

  // "ñu" is matched after NFC turns "n" + U+0303 into "ñ"; "A<mask>" and "<mask>ony" are inside words.
  EXPECT_EQ(
      tokenizer.encode("[CLS] hi <mask> there\t<mask>\t<mask>\xE2\x80\x80 A<mask> <mask>ony n\xCC\x83u!"),
      (std::vector<int32_t>{257, 32, 256, 258, 116, 104, 101, 114, 101, 258, 258, 65,  60, 109, 97, 115,
                            107, 62, 32,  60,  109, 97,  115, 107, 62,  111, 110, 121, 32, 259, 33}));
  EXPECT_EQ(tokenizer.encode(" <mask>  hi"), (std::vector<int32_t>{258, 256}));
  EXPECT_EQ(tokenizer.encode("<mask>,"), (std::vector<int32_t>{258, 44}));
  EXPECT_EQ(tokenizer.vocab_size(), 260);
}

TEST(TokenizerFiles, VocabAndMergesGiveTheSameIds) {
  const auto dir = test::scratch_dir("tokenizer_vocab_merges");
  const Json root = read_json(qwen_tokenizer_json());
  write_file(dir / "vocab.json", root.at("model").at("vocab").dump());
  std::string merges = "#version: 0.2\n";
  for (const Json& merge : root.at("model").at("merges")) {
    merges += merge[0].get<std::string>() + " " + merge[1].get<std::string>() + "\n";
  }
  write_file(dir / "merges.txt", merges);
  // transformers writes the added tokens into tokenizer_config.json keyed by id, without the id inside.
  Json added_tokens = Json::object();
  for (Json token : root.at("added_tokens")) {
    const std::string id = std::to_string(token.at("id").get<int32_t>());
    token.erase("id");
    added_tokens[id] = std::move(token);
  }
  write_file(dir / "tokenizer_config.json", Json{{"added_tokens_decoder", added_tokens}}.dump());

  const Qwen2Tokenizer from_files = Qwen2Tokenizer::from_vocab_and_merges(
      dir / "vocab.json", dir / "merges.txt", dir / "tokenizer_config.json");
  EXPECT_EQ(from_files.vocab_size(), qwen2().vocab_size());
  expect_same_ids(from_files, qwen2(), 7);

  // A folder without tokenizer.json nor tokenizer_config.json: no added tokens, so "<|im_start|>"
  // is plain text, and text without them encodes as before.
  std::filesystem::remove(dir / "tokenizer_config.json");
  const Qwen2Tokenizer without_config = Qwen2Tokenizer::from_folder(dir);
  EXPECT_EQ(without_config.vocab_size(), 151643);
  EXPECT_GT(without_config.encode("<|im_start|>").size(), 1u);
  for (size_t i = 0; i < corpus().size(); i += 11) {
    const std::vector<int32_t>& ids = corpus()[i].ids;
    if (std::any_of(ids.begin(), ids.end(), [](int32_t id) { return id >= 151643; })) continue;
    EXPECT_EQ(without_config.encode(corpus()[i].text), corpus()[i].ids)
        << "text " << printable(corpus()[i].text);
  }
}

TEST(TokenizerFiles, MergesAsStringsEqualMergesAsPairs) {
  const auto dir = test::scratch_dir("tokenizer_string_merges");
  Json root = read_json(qwen_tokenizer_json());
  ASSERT_TRUE(root.at("model").at("merges").at(0).is_array())
      << "the repository's file is expected to use pairs";
  Json string_merges = Json::array();
  for (const Json& merge : root.at("model").at("merges")) {
    string_merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
  }
  root["model"]["merges"] = std::move(string_merges);
  write_file(dir / "tokenizer.json", root.dump());

  expect_same_ids(Qwen2Tokenizer::from_folder(dir), qwen2(), 5);
  expect_same_ids(Qwen2Tokenizer::from_folder(qwen_tokenizer_json().parent_path()), qwen2(), 31);
}

TEST(TokenizerErrors, MissingFileNamesTheFile) {
  const auto dir = test::scratch_dir("tokenizer_missing");
  const std::string message =
      test::error_of([&] { Qwen2Tokenizer::from_tokenizer_json(dir / "absent.json"); });
  test::expect_contains(message, "absent.json");
  const std::string folder_message = test::error_of([&] { Qwen2Tokenizer::from_folder(dir); });
  test::expect_contains(folder_message, dir.string());
}

TEST(TokenizerErrors, TruncatedJsonNamesTheFile) {
  const auto dir = test::scratch_dir("tokenizer_truncated");
  std::ifstream real(qwen_tokenizer_json(), std::ios::binary);
  std::string head(4096, '\0');
  real.read(head.data(), static_cast<std::streamsize>(head.size()));
  write_file(dir / "truncated.json", head);
  const std::string message =
      test::error_of([&] { Qwen2Tokenizer::from_tokenizer_json(dir / "truncated.json"); });
  test::expect_contains(message, "truncated.json");
  test::expect_contains(message, "malformed JSON");
}

TEST(TokenizerErrors, WrongModelTypeNamesTheFile) {
  const auto dir = test::scratch_dir("tokenizer_wordpiece");
  write_file(dir / "wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  const std::string message =
      test::error_of([&] { Qwen2Tokenizer::from_tokenizer_json(dir / "wordpiece.json"); });
  test::expect_contains(message, "wordpiece.json");
  test::expect_contains(message, "WordPiece");
}

TEST(TokenizerErrors, BadMergesNameTheFile) {
  const auto dir = test::scratch_dir("tokenizer_bad_merges");
  Json vocab = Json::object();
  const auto& alphabet = unicode::byte_level_alphabet();
  for (int byte = 0; byte < 256; ++byte) {
    std::string token;
    unicode::append_utf8(token, alphabet[byte]);
    vocab[token] = byte;
  }
  write_file(dir / "vocab.json", vocab.dump());
  write_file(dir / "malformed.txt", "#version: 0.2\na b c\n");
  write_file(dir / "unknown.txt", "#version: 0.2\nx y\n");  // "xy" is not in the vocabulary

  const std::string malformed = test::error_of(
      [&] { Qwen2Tokenizer::from_vocab_and_merges(dir / "vocab.json", dir / "malformed.txt", {}); });
  test::expect_contains(malformed, "malformed.txt");
  const std::string unknown = test::error_of(
      [&] { Qwen2Tokenizer::from_vocab_and_merges(dir / "vocab.json", dir / "unknown.txt", {}); });
  test::expect_contains(unknown, "unknown.txt");
  test::expect_contains(unknown, "not in the vocabulary");
}

TEST(TokenizerErrors, UnknownIdInDecode) {
  const std::string message = test::error_of([] { qwen2().decode(std::vector<int32_t>{9707, 999999}); });
  test::expect_contains(message, "999999");
}

TEST(TokenizerLongText, TenKilobytesRoundTrip) {
  std::string text;
  for (size_t i = 0; text.size() < 10 * 1024; i = (i + 1) % corpus().size()) {
    if (corpus()[i].text.size() < 500) text += corpus()[i].text + " ";
  }
  const std::vector<int32_t> ids = qwen2().encode(text);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_EQ(qwen2().decode(ids), unicode::nfc(text));
}

}  // namespace
}  // namespace canvas
