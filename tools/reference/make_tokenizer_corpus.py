"""Builds the Qwen2 tokenizer parity corpus: tests/golden/tokenizer/corpus.json.

Each entry is {"text": ..., "ids": [...]}, the ids being what Hugging Face `tokenizers` gives for
the text (no special tokens added around it). tests/tokenizer_test.cpp checks that
canvas::Qwen2Tokenizer gives the same ids for every entry.

Run from anywhere (the output is deterministic, so re-running only changes the file when the
strings or the `tokenizers` behaviour change):

    python3 -m pip install tokenizers
    python3 tools/reference/make_tokenizer_corpus.py [path/to/tokenizer.json] [--output FILE]

The tokenizer path defaults to the one the repository ships, models/tiny-qwen-image/tokenizer/tokenizer.json
(Qwen-Image's: added tokens stop at 151664, so Qwen3's <think> and <tool_response> are plain text).

With --unicode-tables it instead probes every code point and prints the C++ tables that
src/tokenizer/unicode.cpp keeps to match `tokenizers` where its Unicode data differs from the
installed utf8proc's (needs libutf8proc; takes about a minute):

    python3 tools/reference/make_tokenizer_corpus.py --unicode-tables
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
from pathlib import Path

from tokenizers import Tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = REPO_ROOT / "models" / "tiny-qwen-image" / "tokenizer" / "tokenizer.json"
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "golden" / "tokenizer" / "corpus.json"

# The Qwen-Image text-encoder prompt template (diffusers' QwenImagePipeline).
QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

PROMPTS = [
    "A cat sitting on a windowsill at sunset",
    "一只在窗台上晒太阳的橘猫，背景是上海的天际线",
    "A neon sign that reads \"OPEN 24/7\" above a rainy Tokyo alley, 東京の路地裏",
    "Poster with the title 'Ethereal Canvas' in bold serif letters, 4K, ultra-detailed",
    "A watercolor painting of Mount Fuji 富士山 with cherry blossoms 🌸🌸",
    "Portrait of an astronaut 👩🏽‍🚀 floating in space, Earth in the background",
    "한국의 전통 한옥 마을, 가을 단풍, 고해상도 사진",
    "مدينة عربية قديمة عند الغروب مع أسواق مزدحمة",
    "A menu board: Coffee $3.50, Tea $2.75, Croissant €4,20 — handwritten chalk",
    "",
    "   leading and trailing spaces   ",
    "Line one\nLine two\r\nLine three\n\n\nLine six",
    "A logo with the text \"QWEN\" and the slogan 'It's what we'RE building'",
    "Café crème brûlée on a marble table, naïve art style, e\u0301le\u0301gant",
    "A 1920s art-deco poster, 3:2 aspect ratio, #FFD700 gold accents",
    "<|vision_start|><|image_pad|><|vision_end|> Change the sky to a starry night",
    "A street sign: \"Rue de l'Église\" — Paris, 1889",
    "Ein gemütliches Café in München mit Brezeln und Weißwurst",
    "Кот в сапогах на обложке детской книги",
    "Ένας αρχαίος ναός στην Ακρόπολη τη νύχτα",
    "A robot holding a sign that says 'Hello, World!' in Comic Sans",
    "\t\tTabbed prompt with\ttabs\tinside",
]

HAND_WRITTEN = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "Hello world",
    "Hello, world!",
    "hello   world",
    "hello \t world",
    "hello\t\tworld",
    "hello\n\nworld",
    "hello \n world",
    "hello  \n\n  world  ",
    "hello\r\n\r\nworld",
    "trailing spaces   ",
    "   leading spaces",
    "x  \n",
    " \n\r\n x",
    "a  \n  b",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "I'm sure you've seen it; they'll say we'd do it, and it's what they're after.",
    "I'M SURE YOU'VE SEEN IT; THEY'LL SAY WE'D DO IT, AND IT'S WHAT THEY'RE AFTER.",
    "It'S, it'Ll, it'Re, it'Ve, it'M, it'D, it'T",
    "don't can't won't shouldn't",
    "'s 't 're 've 'm 'll 'd",
    "'sa 'tb 'rec 'ved 'me 'llama 'dx",
    "'S'T'RE'VE'M'LL'D",
    "it'\u017f and it'\u017fx (long s)",
    "'lſ 'ſſ",
    "rock 'n' roll",
    "''' triple quotes '''",
    "0",
    "12",
    "1234567890",
    "3.14159265358979323846",
    "The year 2024 had 366 days; 1,000,000 people and 0.5% growth.",
    "Phone: +1 (555) 123-4567",
    "Roman numerals: \u2160\u2161\u2162 and fractions \u00bd \u00be and superscripts x\u00b2",
    "Arabic-Indic digits: \u0661\u0662\u0663 and Devanagari \u0967\u0968\u0969",
    "!!!",
    "...",
    "?!?!",
    "Wait... what?!",
    "hi!!\n\n\nyo",
    "end.\n",
    "end.\r\n\r\n",
    "a -- b --- c ---- d",
    "<<>> [[]] {{}} (())",
    "@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "  !!  ??  ",
    "email@example.com",
    "https://github.com/huggingface/tokenizers/blob/main/README.md?tab=readme#usage",
    "http://例子.测试/路径?查询=值",
    "C:\\Users\\canvas\\Documents\\image.png",
    "def f(x):\n    return x * 2\n\n\nprint(f(21))\n",
    "int main() {\n\tstd::cout << \"hi\" << std::endl;\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "    indented with four spaces\n        and eight",
    "SELECT * FROM users WHERE name = 'O''Brien';",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "<html><body><p class=\"x\">Hi</p></body></html>",
    "你好，世界！",
    "我爱北京天安门。今天天气很好，我们去公园散步吧。",
    "中文和English混合的句子，带有数字123和标点！",
    "日本語のテキスト：こんにちは、世界。カタカナとひらがな。",
    "東京は日本の首都です。",
    "한국어 텍스트: 안녕하세요, 세계!",
    "العربية: مرحبا بالعالم",
    "עברית: שלום עולם",
    "हिन्दी: नमस्ते दुनिया",
    "ไทย: สวัสดีชาวโลก",
    "Tiếng Việt: Xin chào thế giới",
    "Ελληνικά: Γειά σου Κόσμε",
    "Русский: Привет, мир!",
    "ǅungla ǈjubav ǋoga (titlecase digraphs)",
    "😀",
    "😀😃😄😁",
    "I ❤️ NY 🗽",
    "👍🏻👍🏼👍🏽👍🏾👍🏿",
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 flag and 🏴‍☠️ pirate",
    "👩🏽‍🚀👨🏿‍🔬",
    "🇨🇳🇺🇸🇯🇵🇰🇷",
    "Text with emoji 🎨 in the middle and at the end 🚀",
    "e\u0301",
    "e\u0301cole",
    "Cafe\u0301",
    "A\u030a and \u212b (angstrom)",
    "\u1100\u1161\u11a8 (conjoining jamo)",
    "o\u0308\u0301 stacked marks",
    "\u0301 leading combining mark",
    "x \u0301y",
    "\ufb01 ligature and \u2126 ohm sign",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "em\u2003space and thin\u2009space",
    "line\u2028separator and paragraph\u2029separator",
    "next\u0085line",
    "zero\u200bwidth\u200cjoiner\u200dtest",
    "mongolian\u180evowel separator",
    "bom\ufeffinside",
    "file\x1cgroup\x1drecord\x1eunit\x1fseparators",
    "vertical\x0btab and form\x0cfeed",
    "a\x00b (NUL)",
    "\x7f delete and \x1b escape",
    " \u00a0 \u3000 mixed",
    "\u00a0leading nbsp",
    "word\u00a0",
    "\u3000\u3000indented Chinese paragraph 段落",
    "\t\ttabs then text",
    "tabs\tbetween\twords",
    " \t \t spaces and tabs before a word",
    "\n\n\nleading newlines",
    "trailing newlines\n\n\n",
    "\r\r\r carriage returns",
    "mixed\r\n\n\r\nline endings",
    "a\n \n \nb",
    "private use \ue000\uf8ff",
    "replacement \ufffd char",
    "supplementary 𝕳𝖊𝖑𝖑𝖔 𝟙𝟚𝟛",
    "math ∑∫∂√∞≠≤≥",
    "currency $ € £ ¥ ₹ ₿",
    "arrows → ← ↑ ↓ ⇒",
    "box drawing ┌─┐│└─┘",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<|endoftext|><|endoftext|>",
    "text<|endoftext|>more text",
    " <|endoftext|> ",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "<|im_start|",
    "<|IM_START|>",
    "<|im_start|> user",
    "<<|im_start|>>",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>",
    "<|vision_start|><|video_pad|><|vision_end|>",
    "<|box_start|>(10,20),(30,40)<|box_end|>",
    "<|object_ref_start|>the cat<|object_ref_end|>",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<think>\n\n</think>\n\n",
    "<|fim_prefix|>def<|fim_suffix|>return<|fim_middle|>",
    "<|repo_name|>canvas<|file_sep|>main.cpp",
    "<tool_response>ok</tool_response>",
    "e\u0301<|im_end|>e\u0301",
    # Where the Unicode data of `tokenizers` differs from utf8proc's (see unicode.cpp's tables).
    "x\u1abf\u0327y (mark from Unicode 14 that tokenizers does not reorder)",
    "\U00011935\U00011930 (Dives Akuru parts that tokenizers does not compose)",
    "a\u0301\u07fd\u0301 and e\u0301\u0d3b",
    "\U00013460's'sa (Egyptian hieroglyph from Unicode 16)",
    "\U0002ebf0\U0002ebf1 CJK extension I and \U00010d40\U00010d41 Garay digits",
]


def long_strings() -> list[str]:
    return [
        "a" * 1500,
        "supercalifragilisticexpialidocious" * 40,
        "Donaudampfschifffahrtsgesellschaftskapitänswitwe" * 25,
        "9" * 2000,
        "31415926535897932384626433832795028841971693993751" * 30,
        " " * 1200 + "word",
        "\n" * 500,
        "!" * 1100,
        "中" * 1200,
        "漢字テキスト" * 200,
        "😀" * 400,
        "ab " * 400,
        "The quick brown fox jumps over the lazy dog. " * 60,
    ]


# Fragments the random strings are glued from: each targets a branch of the pre-tokenizer regex or
# of the added-token split.
FRAGMENTS = [
    "hello", "World", "IT", "x", "Ünïcödé", "naïve", "東京", "中文", "한글", "العربية", "Привет", "ǅ",
    "0", "7", "42", "2024", "3.14", "1e10", "\u00bd", "\u2163", "\u0663",
    " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2028", "\u2003",
    "\x0b", "\x0c", "\x85", "\x1c", "\u200b", "\u180e",
    "'", "'s", "'S", "'ll", "'LL", "'re", "'Ve", "'m", "'D", "'t", "'\u017f",
    ".", ",", "!", "?", "...", "--", "()", "[]", "{}", "<>", "\"", "#", "$", "%", "&", "*", "/", "\\", "@",
    "_", "~", "`", "|", "^", "+", "=", ":", ";",
    "e\u0301", "a\u0308", "\u0301", "\u0327",
    "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "🎨",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|image_pad|>", "<think>", "<|im_", "|>", "<|",
]


def random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        length = rng.randint(1, 24)
        strings.append("".join(rng.choice(FRAGMENTS) for _ in range(length)))
    return strings


def build_corpus() -> list[str]:
    texts = list(HAND_WRITTEN)
    texts += [QWEN_IMAGE_TEMPLATE.format(prompt) for prompt in PROMPTS]
    texts += PROMPTS
    texts += long_strings()
    texts += random_strings(count=160, seed=20240607)
    return list(dict.fromkeys(texts))  # without repeats, in order


# The Unicode White_Space property, which \s means to the regex engine of `tokenizers`.
WHITE_SPACE = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}
WHITE_SPACE |= set(range(0x2000, 0x200B))


def code_point_ranges(code_points: list[int], label=lambda cp: "") -> list[tuple[int, int, str]]:
    ranges: list[list] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == label(cp):
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, label(cp)])
    return [tuple(r) for r in ranges]


def print_unicode_tables(tokenizer: Tokenizer) -> None:
    """Prints where `tokenizers` classifies or normalizes code points unlike utf8proc.

    Its regex engine (Oniguruma) and its NFC tables come from different Unicode versions than the
    installed utf8proc, so the C++ side patches the code points where the answers differ.
    """
    utf8proc = ctypes.CDLL("libutf8proc.so")
    utf8proc.utf8proc_category.restype = ctypes.c_int
    for function in (utf8proc.utf8proc_NFC, utf8proc.utf8proc_NFD):
        function.restype = ctypes.c_void_p
        function.argtypes = [ctypes.c_char_p]
    libc_free = ctypes.CDLL(None).free
    libc_free.argtypes = [ctypes.c_void_p]

    def utf8proc_map(function, text: str) -> str:
        pointer = function(text.encode())
        result = ctypes.string_at(pointer).decode()
        libc_free(pointer)
        return result

    def utf8proc_class(cp: int) -> str:
        category = utf8proc.utf8proc_category(cp)
        return "kLetter" if 1 <= category <= 5 else "kNumber" if 9 <= category <= 11 else "kOther"

    pre_tokenizer = tokenizer.pre_tokenizer
    normalizer = tokenizer.normalizer
    scalar_values = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF]

    # Regex classes: "a"+c stays one piece only for a letter; c+c splits in two only for a number;
    # "a"+c+c+"b" splits as a, c, cb only for (non line break) whitespace.
    class_of = {}
    for cp in scalar_values:
        c = chr(cp)
        if cp not in (0xA, 0xD):
            pieces = [offsets for _, offsets in pre_tokenizer.pre_tokenize_str("a" + c + c + "b")]
            if (pieces == [(0, 1), (1, 2), (2, 4)]) != (cp in WHITE_SPACE):
                raise SystemExit(f"U+{cp:04X}: whitespace differs from White_Space")
        if cp in WHITE_SPACE:
            continue
        if len(pre_tokenizer.pre_tokenize_str("a" + c)) == 1:
            class_of[cp] = "kLetter"
        elif len(pre_tokenizer.pre_tokenize_str(c + c)) == 2:
            class_of[cp] = "kNumber"
        else:
            class_of[cp] = "kOther"
    differing = [cp for cp, cls in class_of.items() if cls != utf8proc_class(cp)]
    print("// Regex classes (first, last, class) where tokenizers differs from utf8proc.")
    for first, last, cls in code_point_ranges(differing, class_of.get):
        print(f"    {{0x{first:04X}, 0x{last:04X}, CharClass::{cls}}},")

    # NFC: code points whose composition, decomposition or reordering differs, probed alone, after
    # a mark of class 230, before a mark of class 1, and decomposed.
    boundaries = set()
    composites_using: dict[int, set[int]] = {}
    for cp in scalar_values:
        c = chr(cp)
        decomposed = utf8proc_map(utf8proc.utf8proc_NFD, c)
        if decomposed != c:
            for part in decomposed:
                composites_using.setdefault(ord(part), set()).add(cp)
        probes = [c, "a\u0301" + c, "a" + c + "\u0334", decomposed]
        if any(normalizer.normalize_str(p) != utf8proc_map(utf8proc.utf8proc_NFC, p) for p in probes):
            boundaries.add(cp)
    # The parts of a composite that tokenizers does not know must not compose either; that is safe
    # only when they take part in no composite that it does know.
    for composite in sorted(boundaries):
        decomposed = utf8proc_map(utf8proc.utf8proc_NFD, chr(composite))
        if decomposed == chr(composite):
            continue
        for part in decomposed:
            if not composites_using.get(ord(part), set()) <= boundaries:
                raise SystemExit(f"U+{ord(part):04X} is part of both known and unknown composites")
            boundaries.add(ord(part))
    print("// NFC boundaries (first, last) that tokenizers leaves as they are.")
    for first, last, _ in code_point_ranges(sorted(boundaries)):
        print(f"    {{0x{first:04X}, 0x{last:04X}}},")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer", nargs="?", type=Path, default=DEFAULT_TOKENIZER,
                        help="tokenizer.json (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="corpus file (default: %(default)s)")
    parser.add_argument("--unicode-tables", action="store_true",
                        help="print the Unicode patch tables for src/tokenizer/unicode.cpp instead")
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    if args.unicode_tables:
        print_unicode_tables(tokenizer)
        return
    texts = build_corpus()
    entries = [{"text": text, "ids": tokenizer.encode(text, add_special_tokens=False).ids} for text in texts]

    args.output.parent.mkdir(parents=True, exist_ok=True)
    # One entry per line keeps diffs of the committed file readable.
    lines = [json.dumps(entry, ensure_ascii=False) for entry in entries]
    args.output.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    print(f"wrote {len(entries)} entries to {args.output}")


if __name__ == "__main__":
    main()
