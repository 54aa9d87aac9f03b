// Text handling under the Qwen2 tokenizer: UTF-8 repair, NFC, the Qwen2 pre-tokenizer split and the
// GPT-2 byte-level alphabet. Everything here mirrors what Hugging Face `tokenizers` does, so that
// token ids match it exactly.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace canvas::unicode {

// Replaces every ill-formed UTF-8 sequence with U+FFFD, one replacement per maximal ill-formed
// subpart (the Unicode "best practice" that Rust's String::from_utf8_lossy and Python's
// errors="replace" follow). Valid input comes back unchanged.
std::string replace_invalid_utf8(std::string_view bytes);

// Where the first ill-formed sequence of `bytes` starts, or nullopt when all of it is valid UTF-8 (the
// Unicode definition, which JSON writers enforce: no overlongs, surrogates or code points past U+10FFFF).
std::optional<size_t> first_invalid_utf8(std::string_view bytes);

// Decodes valid UTF-8 (as produced by replace_invalid_utf8) into code points.
std::vector<char32_t> decode_utf8(std::string_view valid_utf8);
void append_utf8(std::string& out, char32_t code_point);

// Canonical composition (NFC) of valid UTF-8 text, leaving alone the few code points that the NFC
// of `tokenizers` (Unicode 9.0 data) does not know.
std::string nfc(std::string_view valid_utf8);

// The Unicode White_Space property: what \s means in the Oniguruma and Rust regex engines that
// `tokenizers` uses (unlike Python's str.isspace, it excludes U+001C..U+001F).
bool is_whitespace(char32_t code_point);
// \p{L} and \p{N} as the regex engine of `tokenizers` sees them (Unicode 16.0 data).
bool is_letter(char32_t code_point);
bool is_number(char32_t code_point);
// Rust regex \w: letters, marks, decimal digits, letter numbers, connector punctuation and the
// joiners. Only single_word added tokens consult it.
bool is_word_char(char32_t code_point);

// Splits valid UTF-8 text the way the Qwen2 pre-tokenizer regex
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// does with Split behavior "Isolated". The pieces cover the text in order, none empty.
std::vector<std::string_view> split_qwen2_pretokens(std::string_view valid_utf8);
// The pattern above exactly as tokenizer.json spells it, to recognise files this splitter serves.
extern const std::string_view kQwen2PretokenizerPattern;

// GPT-2's reversible byte-to-character table: every byte value gets a printable code point, so
// byte strings can live in a JSON vocabulary.
const std::array<char32_t, 256>& byte_level_alphabet();
// A byte string in the byte-level alphabet (UTF-8 of the mapped code points).
std::string to_byte_level(std::string_view bytes);
// The bytes a byte-level token stands for; nullopt when it has a character outside the alphabet.
std::optional<std::string> from_byte_level(std::string_view token);

}  // namespace canvas::unicode
