#include "tokenizer/unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <memory>

#include "util/error.h"

namespace canvas::unicode {

namespace {

constexpr char32_t kReplacementCharacter = 0xFFFD;

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

// Length of the well-formed UTF-8 sequence at the start of `bytes`, or the length of the maximal
// ill-formed subpart there as a negative number. Follows Table 3-7 of the Unicode standard: the
// allowed range of the second byte depends on the lead byte (this excludes overlongs, surrogates
// and code points past U+10FFFF).
int sequence_length(std::string_view bytes) {
  const auto lead = static_cast<unsigned char>(bytes[0]);
  if (lead < 0x80) return 1;
  int length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return -1;
  }
  if (bytes.size() < 2) return -1;
  const auto second = static_cast<unsigned char>(bytes[1]);
  if (second < second_min || second > second_max) return -1;
  for (int k = 2; k < length; ++k) {
    if (static_cast<size_t>(k) >= bytes.size() || !is_continuation(static_cast<unsigned char>(bytes[k]))) {
      return -k;
    }
  }
  return length;
}

bool is_newline(char32_t code_point) {
  return code_point == U'\r' || code_point == U'\n';
}

// The three classes the pre-tokenizer regex distinguishes, plus everything else ("other" is
// [^\s\p{L}\p{N}]). No code point is in two of them: White_Space characters are all separators or
// controls.
enum class CharClass : uint8_t { kLetter, kNumber, kWhitespace, kOther };

// `tokenizers` (0.23) builds with Unicode data of other versions than utf8proc 2.8 (Unicode 15.0):
// its regex engine knows Unicode 16.0 categories, its NFC tables are Unicode 9.0. These tables patch
// the difference; tools/reference/make_tokenizer_corpus.py --unicode-tables regenerates them by
// probing every code point. They give absolute answers, so they stay right with a newer utf8proc.
struct ClassRange {
  char32_t first;
  char32_t last;
  CharClass char_class;
};
constexpr ClassRange kRegexClassPatches[] = {
    {0x1C89, 0x1C8A, CharClass::kLetter},   {0xA7CB, 0xA7CD, CharClass::kLetter},
    {0xA7DA, 0xA7DC, CharClass::kLetter},   {0x105C0, 0x105F3, CharClass::kLetter},
    {0x10D40, 0x10D49, CharClass::kNumber}, {0x10D4A, 0x10D65, CharClass::kLetter},
    {0x10D6F, 0x10D85, CharClass::kLetter}, {0x10EC2, 0x10EC4, CharClass::kLetter},
    {0x11380, 0x11389, CharClass::kLetter}, {0x1138B, 0x1138B, CharClass::kLetter},
    {0x1138E, 0x1138E, CharClass::kLetter}, {0x11390, 0x113B5, CharClass::kLetter},
    {0x113B7, 0x113B7, CharClass::kLetter}, {0x113D1, 0x113D1, CharClass::kLetter},
    {0x113D3, 0x113D3, CharClass::kLetter}, {0x116D0, 0x116E3, CharClass::kNumber},
    {0x11BC0, 0x11BE0, CharClass::kLetter}, {0x11BF0, 0x11BF9, CharClass::kNumber},
    {0x13460, 0x143FA, CharClass::kLetter}, {0x16100, 0x1611D, CharClass::kLetter},
    {0x16130, 0x16139, CharClass::kNumber}, {0x16D40, 0x16D6C, CharClass::kLetter},
    {0x16D70, 0x16D79, CharClass::kNumber}, {0x18CFF, 0x18CFF, CharClass::kLetter},
    {0x1CCF0, 0x1CCF9, CharClass::kNumber}, {0x1E5D0, 0x1E5ED, CharClass::kLetter},
    {0x1E5F0, 0x1E5F0, CharClass::kLetter}, {0x1E5F1, 0x1E5FA, CharClass::kNumber},
    {0x2EBF0, 0x2EE5D, CharClass::kLetter},
};

// Code points the NFC of `tokenizers` does not know (no decomposition, composition or combining
// class), so they split the text into independently normalized runs and stay as they are.
struct CodePointRange {
  char32_t first;
  char32_t last;
};
constexpr CodePointRange kNormalizationBoundaries[] = {
    {0x07FD, 0x07FD},   {0x0898, 0x089F},   {0x08CA, 0x08D3},   {0x09FE, 0x09FE},   {0x0C3C, 0x0C3C},
    {0x0D3B, 0x0D3C},   {0x0EBA, 0x0EBA},   {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x11930, 0x11930}, {0x11935, 0x11935}, {0x11938, 0x11938}, {0x1193D, 0x1193E}, {0x11943, 0x11943},
    {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42},
    {0x11D44, 0x11D45}, {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

template <typename Range, size_t kCount>
const Range* find_range(const Range (&ranges)[kCount], char32_t code_point) {
  const Range* after =
      std::upper_bound(std::begin(ranges), std::end(ranges), code_point,
                       [](char32_t value, const Range& range) { return value < range.first; });
  if (after == std::begin(ranges) || std::prev(after)->last < code_point) return nullptr;
  return std::prev(after);
}

CharClass classify(char32_t code_point) {
  if (is_whitespace(code_point)) return CharClass::kWhitespace;
  if (const ClassRange* patch = find_range(kRegexClassPatches, code_point)) return patch->char_class;
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(code_point));
  if (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) return CharClass::kLetter;
  if (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO) return CharClass::kNumber;
  return CharClass::kOther;
}

std::string utf8proc_nfc(std::string_view valid_utf8) {
  if (valid_utf8.empty()) return {};
  utf8proc_uint8_t* composed = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(valid_utf8.data()),
                   static_cast<utf8proc_ssize_t>(valid_utf8.size()), &composed,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(composed, &std::free);
  check(length >= 0, std::string("NFC normalization failed: ") + utf8proc_errmsg(length));
  return std::string(reinterpret_cast<const char*>(composed), static_cast<size_t>(length));
}

// Length of the contraction suffix (after the apostrophe) starting at `begin`, or 0. The regex
// group is case-insensitive under Unicode case folding, which also lets U+017F LATIN SMALL LETTER
// LONG S stand for "s".
size_t contraction_suffix_length(const std::vector<char32_t>& text, size_t begin) {
  const auto folded = [&](size_t index) -> char32_t {
    if (index >= text.size()) return 0;
    const char32_t code_point = text[index];
    if (code_point == 0x017F) return U's';
    if (code_point >= U'A' && code_point <= U'Z') return code_point - U'A' + U'a';
    return code_point;
  };
  const char32_t first = folded(begin);
  if (first == U's' || first == U't' || first == U'm' || first == U'd') return 1;
  const char32_t second = folded(begin + 1);
  if ((first == U'r' || first == U'v') && second == U'e') return 2;
  if (first == U'l' && second == U'l') return 2;
  return 0;
}

// End (exclusive) of the regex match that starts at `begin`: the alternatives are tried in order
// and the first that matches wins, as in a backtracking engine. Every code point belongs to one of
// the classes, so some alternative always matches at least one code point.
size_t pretoken_end(const std::vector<char32_t>& text, const std::vector<CharClass>& classes, size_t begin) {
  const size_t size = text.size();
  const auto run_end = [&](size_t from, CharClass run_class) {
    while (from < size && classes[from] == run_class) ++from;
    return from;
  };

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (text[begin] == U'\'') {
    if (const size_t suffix = contraction_suffix_length(text, begin + 1)) return begin + 1 + suffix;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t letters_begin = begin;
  if (classes[begin] != CharClass::kLetter && classes[begin] != CharClass::kNumber &&
      !is_newline(text[begin]) && begin + 1 < size && classes[begin + 1] == CharClass::kLetter) {
    letters_begin = begin + 1;
  }
  if (classes[letters_begin] == CharClass::kLetter) return run_end(letters_begin, CharClass::kLetter);
  // \p{N}
  if (classes[begin] == CharClass::kNumber) return begin + 1;
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  const bool space_then_other =
      text[begin] == U' ' && begin + 1 < size && classes[begin + 1] == CharClass::kOther;
  const size_t others_begin = space_then_other ? begin + 1 : begin;
  if (classes[others_begin] == CharClass::kOther) {
    size_t end = run_end(others_begin, CharClass::kOther);
    while (end < size && is_newline(text[end])) ++end;
    return end;
  }

  // Only whitespace can start here now.
  const size_t space_end = run_end(begin, CharClass::kWhitespace);
  // \s*[\r\n]+ : the greedy \s* backs off to the last line break of the run.
  for (size_t end = space_end; end > begin; --end) {
    if (is_newline(text[end - 1])) return end;
  }
  // \s+(?!\S) holds for the whole run only at the end of the text; otherwise it backs off one code
  // point so that the run's last space can join the following word. A single space before a
  // non-space fails it and falls to \s+.
  if (space_end == size || space_end - begin == 1) return space_end;
  return space_end - 1;
}

struct ByteLevelTables {
  std::array<char32_t, 256> alphabet{};
  // Indexed by code point; -1 for characters outside the alphabet.
  std::array<int16_t, 512> byte_of{};
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables = [] {
    ByteLevelTables built;
    built.byte_of.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the rest (controls, space, DEL, NBSP, soft
    // hyphen) are moved, in byte order, to U+0100 onwards.
    char32_t next_moved = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
      const char32_t code_point = printable ? static_cast<char32_t>(byte) : next_moved++;
      built.alphabet[byte] = code_point;
      built.byte_of[code_point] = static_cast<int16_t>(byte);
    }
    return built;
  }();
  return tables;
}

}  // namespace

std::string replace_invalid_utf8(std::string_view bytes) {
  std::string repaired;
  repaired.reserve(bytes.size());
  size_t position = 0;
  while (position < bytes.size()) {
    const int length = sequence_length(bytes.substr(position));
    if (length > 0) {
      repaired.append(bytes.substr(position, length));
      position += length;
    } else {
      append_utf8(repaired, kReplacementCharacter);
      position += -length;
    }
  }
  return repaired;
}

std::optional<size_t> first_invalid_utf8(std::string_view bytes) {
  size_t position = 0;
  while (position < bytes.size()) {
    const int length = sequence_length(bytes.substr(position));
    if (length < 0) return position;
    position += length;
  }
  return std::nullopt;
}

std::vector<char32_t> decode_utf8(std::string_view valid_utf8) {
  std::vector<char32_t> code_points;
  code_points.reserve(valid_utf8.size());
  size_t position = 0;
  while (position < valid_utf8.size()) {
    const auto lead = static_cast<unsigned char>(valid_utf8[position]);
    const int length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    char32_t code_point = length == 1 ? lead : lead & (0x7F >> length);
    for (int k = 1; k < length && position + k < valid_utf8.size(); ++k) {
      code_point = (code_point << 6) | (static_cast<unsigned char>(valid_utf8[position + k]) & 0x3F);
    }
    code_points.push_back(code_point);
    position += length;
  }
  return code_points;
}

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::string nfc(std::string_view valid_utf8) {
  bool ascii = true;
  for (char byte : valid_utf8) ascii = ascii && static_cast<unsigned char>(byte) < 0x80;
  if (ascii) return std::string(valid_utf8);  // ASCII is always in NFC

  std::string normalized;
  normalized.reserve(valid_utf8.size());
  size_t run_begin = 0;
  for (size_t position = 0; position < valid_utf8.size();) {
    const int length = sequence_length(valid_utf8.substr(position));
    const char32_t code_point = decode_utf8(valid_utf8.substr(position, length)).front();
    if (find_range(kNormalizationBoundaries, code_point) != nullptr) {
      normalized += utf8proc_nfc(valid_utf8.substr(run_begin, position - run_begin));
      normalized.append(valid_utf8.substr(position, length));
      run_begin = position + length;
    }
    position += length;
  }
  normalized += utf8proc_nfc(valid_utf8.substr(run_begin));
  return normalized;
}

bool is_whitespace(char32_t code_point) {
  switch (code_point) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return code_point >= 0x2000 && code_point <= 0x200A;
  }
}

bool is_letter(char32_t code_point) {
  return classify(code_point) == CharClass::kLetter;
}

bool is_number(char32_t code_point) {
  return classify(code_point) == CharClass::kNumber;
}

bool is_word_char(char32_t code_point) {
  if (code_point == 0x200C || code_point == 0x200D) return true;
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(code_point));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_NL) ||
         category == UTF8PROC_CATEGORY_PC;
}

const std::string_view kQwen2PretokenizerPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::vector<std::string_view> split_qwen2_pretokens(std::string_view valid_utf8) {
  const std::vector<char32_t> text = decode_utf8(valid_utf8);
  std::vector<CharClass> classes(text.size());
  std::vector<size_t> byte_offsets(text.size() + 1);
  size_t byte_offset = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    classes[i] = classify(text[i]);
    byte_offsets[i] = byte_offset;
    byte_offset += text[i] < 0x80 ? 1 : text[i] < 0x800 ? 2 : text[i] < 0x10000 ? 3 : 4;
  }
  byte_offsets[text.size()] = byte_offset;

  std::vector<std::string_view> pieces;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = pretoken_end(text, classes, begin);
    pieces.push_back(valid_utf8.substr(byte_offsets[begin], byte_offsets[end] - byte_offsets[begin]));
    begin = end;
  }
  return pieces;
}

const std::array<char32_t, 256>& byte_level_alphabet() {
  return byte_level_tables().alphabet;
}

std::string to_byte_level(std::string_view bytes) {
  const auto& alphabet = byte_level_tables().alphabet;
  std::string mapped;
  mapped.reserve(bytes.size() * 2);
  for (char byte : bytes) append_utf8(mapped, alphabet[static_cast<unsigned char>(byte)]);
  return mapped;
}

std::optional<std::string> from_byte_level(std::string_view token) {
  const auto& byte_of = byte_level_tables().byte_of;
  std::string bytes;
  bytes.reserve(token.size());
  for (char32_t code_point : decode_utf8(replace_invalid_utf8(token))) {
    if (code_point >= byte_of.size() || byte_of[code_point] < 0) return std::nullopt;
    bytes += static_cast<char>(byte_of[code_point]);
  }
  return bytes;
}

}  // namespace canvas::unicode
