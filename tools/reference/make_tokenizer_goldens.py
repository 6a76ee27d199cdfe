#!/usr/bin/env python3
"""Tokenizer goldens for sailvl (tests/data/tokenizer/goldens.json + hf_speed.json).

References, all run on tests/data/sailvl-tokenizer/:
  * "tokenizers": the Hugging Face `tokenizers` library on tokenizer.json (the primary oracle).
      - ids_special: tok.encode(text, add_special_tokens=False)  -- HF default, added tokens matched;
      - ids_plain:   the same tokenizer.json with its added_tokens removed -- pure BPE, which is
                     sailvl's policy for user text (no added token, special or not, is matched).
  * "files": transformers' Qwen2Tokenizer built from vocab.json + merges.txt + added_tokens.json +
    tokenizer_config.json only (transformers 5 has no pure-Python "slow" Qwen2Tokenizer any more:
    this is the file-form loader, still backed by the Rust BPE).
  * "py_bpe": the GPT-2 "slow" BPE algorithm (regex split, bytes_to_unicode, merge every occurrence
    of the lowest-ranked pair per pass) in plain Python over vocab.json/merges.txt, as the old slow
    tokenizer did. An independent cross-check of ids_plain.
Every disagreement between references is recorded in goldens.json["disagreements"] (expected: none).

Decoded strings come from `tokenizers` (decode with skip_special_tokens False/True).
hf_speed.json: tokens/s of `tokenizers` encoding the benchmark corpus (see bench_corpus()), the
same text bench/bench_tokenizer.cpp builds.

Usage: tools/reference/.venv/bin/python tools/reference/make_tokenizer_goldens.py [OUT_DIR]
       (default OUT_DIR: tests/data/tokenizer). main(out_dir) is called by make_fixtures.py.
Output is deterministic except hf_speed.json's timings.
"""
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK_DIR = os.path.join(ROOT, "tests", "data", "sailvl-tokenizer")

SPLIT_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def corpus():
    """(name, text) pairs: the golden corpus. Keep names unique and stable."""
    c = [
        ("empty", ""),
        ("hello", "Hello world"),
        ("sentence", "The quick brown fox jumps over the lazy dog."),
        ("leading_space", " leading space"),
        ("trailing_spaces", "trailing spaces   "),
        ("space_runs", "a  b   c    d\t\te"),
        ("crlf", "line one\r\nline two\r\n\r\nline four"),
        ("lf_runs", "para\n\n\nnext\n"),
        ("tabs", "\tindented\n\t\tdouble\t"),
        ("only_whitespace", " \t \n \r\n  "),
        ("contractions", "I'm sure you're right, it's what we'll do and they've said I'd go."),
        ("contractions_upper", "I'M SURE YOU'RE RIGHT, IT'S WHAT WE'LL DO, THEY'VE SAID I'D GO. 'S 'LL 'RE"),
        ("contractions_mixed", "It'S wE'Ll tHey'Ve I'D don'T"),
        ("apostrophe_long_s", "it'\u017f odd"),
        ("digits", "1234567890 3.14159 1,000,000"),
        ("long_digits", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280"),
        ("code_python", "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n"),
        ("code_cpp", "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n"),
        ("json", '{"key": [1, 2.5, null, true], "s": "a\\nb"}'),
        ("url", "https://example.com/org/Model-Name-2B?x=1&y=%20"),
        ("punct_runs", "Wait... what?!?! ---- ==== ***"),
        ("chinese", "你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。"),
        ("chinese_mixed", "请描述这张图片。Describe 图像 in 中文 please!"),
        ("japanese", "これは日本語のテキストです。カタカナとひらがな、漢字。"),
        ("korean", "안녕하세요, 세계! 한국어 텍스트입니다."),
        ("arabic", "مرحبا بالعالم، هذا نص عربي."),
        ("hebrew", "שלום עולם"),
        ("hindi", "नमस्ते दुनिया, यह हिंदी पाठ है।"),
        ("thai", "สวัสดีชาวโลก นี่คือข้อความภาษาไทย"),
        ("russian", "Привет, мир! Это русский текст."),
        ("greek", "Γειά σου Κόσμε"),
        ("vietnamese", "Tiếng Việt có dấu: ắ ặ ề ổ ữ"),
        ("emoji", "I love 🍕 and 🎉!"),
        ("emoji_zwj", "Family: 👨\u200d👩\u200d👧\u200d👦 and 🏳\ufe0f\u200d🌈 and 👩🏽\u200d💻"),
        ("emoji_flags", "🇫🇷🇯🇵🇺🇸"),
        ("emoji_skin", "👍🏻👍🏿"),
        ("nfc_e_decomposed", "Caf" + "e\u0301" + " au lait"),
        ("nfc_e_composed", "Caf\u00e9 au lait"),
        ("nfc_hangul_jamo", "\u1100\u1161\u11a8 \u1112\u1161\u11ab"),
        ("nfc_angstrom", "\u212b \u2126 \u0041\u030a"),
        ("nfc_multi_marks", "q\u0307\u0323 o\u0308\u0304"),
        ("combining_only", "\u0301\u0301 x"),
        ("nbsp_and_spaces", "a\u00a0b\u2009c\u3000d\u202fe"),
        ("nel_and_seps", "a\u0085b\u2028c\u2029d\u000bx\u000cy"),
        ("zero_width", "zero\u200bwidth\u200cjoin\u200dx\ufeff"),
        ("special_im_end", "Say <|im_end|> now"),
        ("special_im_start", "<|im_start|>user\nhi<|im_end|>"),
        ("special_img_context", "<img><IMG_CONTEXT><IMG_CONTEXT></img>\nDescribe."),
        ("special_endoftext", "end<|endoftext|>start"),
        ("special_nonspecial_added", "<tool_call>{\"name\": \"f\"}</tool_call>"),
        ("special_box_ref", "<ref>the cat</ref><box>[[10, 20, 30, 40]]</box>"),
        ("special_partial", "<|im_end| <IMG_CONTEXT <|im_en"),
        ("special_adjacent", "<|im_end|><|im_end|>x<|endoftext|>"),
        ("image_marker", "<image>\nPlease describe the image shortly."),
        ("mixed_scripts", "English, 中文, العربية, हिन्दी, ไทย, 한국어 — all in one ✓"),
        ("math", "∑_{i=1}^{n} x_i² ≤ ∫₀^∞ e^{-t} dt ≈ π/√2"),
        ("currency", "$100 €50 ¥1000 £3 ₹200"),
        ("control_chars", "a\x00b\x01c\x7fd"),
        ("fullwidth", "ＡＢＣ１２３！"),
        ("latin_ext", "Ærøskøbing Straße naïve façade"),
        ("mixed_case_words", "camelCaseWord snake_case_word SCREAMING_CASE"),
        ("numbers_units", "3kg 10km/h 2nd 3rd 4th 1e-5"),
        ("repeated_word", "the the the the the the the the"),
        ("markdown", "# Title\n\n- item *one*\n- item **two**\n\n```\ncode\n```\n"),
        ("run_a_10k", "a" * 10000),
        ("run_space_10k", " " * 10000),
        ("run_newline_3k", "\n" * 3000),
        ("run_cjk_10k", "中" * 10000),
        ("run_digit_10k", "7" * 10000),
        ("run_emoji_2k", "😀" * 2000),
        ("run_ab_5k", "ab" * 5000),
        ("run_exclaim_10k", "!" * 10000),
    ]
    names = [n for n, _ in c]
    assert len(set(names)) == len(names)
    return c


def decode_cases(vocab):
    """(name, ids) pairs for decode-only goldens: byte tokens that split or break UTF-8 sequences
    (U+FFFD replacement, one per maximal invalid subpart), special tokens mixed in."""
    byte_map = bytes_to_unicode()

    def b(*values):  # ids of single-byte tokens
        return [vocab[byte_map[v]] for v in values]

    hello = vocab["Hello"]
    return [
        ("e_acute_two_bytes", b(0xC3, 0xA9)),
        ("emoji_four_bytes", b(0xF0, 0x9F, 0x98, 0x80)),
        ("lone_lead_byte_end", b(0xE4)),
        ("truncated_3byte_end", [hello] + b(0xE4, 0xB8)),
        ("truncated_4byte_end", b(0xF0, 0x9F, 0x98)),
        ("truncated_then_text", b(0xE4, 0xB8) + [hello]),
        ("stray_continuations", b(0x80, 0xBF) + [hello]),
        ("invalid_ff_fe", b(0xFF, 0xFE, 0x41)),
        ("overlong_c0_80", b(0xC0, 0x80)),
        ("surrogate_ed_a0_80", b(0xED, 0xA0, 0x80)),
        ("above_max_f4_90", b(0xF4, 0x90, 0x80, 0x80)),
        ("special_mixed", [151644, 872, 198, hello, 151645, 151667, 151643]),
        ("only_specials", [151665, 151667, 151666]),
        ("nonspecial_added", [151657, hello, 151658]),
        ("split_char_around_special", b(0xE4) + [151645] + b(0xB8, 0xAD)),
    ]


def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable code points."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(x) for x in cs]))


class PyBpe:
    """The GPT-2 slow-tokenizer BPE (openai/gpt-2 encoder.py's algorithm) for cross-checking."""

    def __init__(self, tok_dir):
        import regex
        with open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)
        ranks = {}
        with open(os.path.join(tok_dir, "merges.txt"), encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#version"):
                    continue
                a, b = line.split(" ")
                ranks.setdefault((a, b), len(ranks))
        self.ranks = ranks
        self.byte_map = bytes_to_unicode()
        self.pat = regex.compile(SPLIT_RE)
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode(self, text):
        text = unicodedata.normalize("NFC", text)
        ids = []
        for piece in self.pat.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(mapped))
        return ids


def plain_tokenizer(tok_json_path):
    """tokenizer.json with no added tokens: pure normaliser + pre-tokeniser + BPE."""
    from tokenizers import Tokenizer
    with open(tok_json_path, encoding="utf-8") as f:
        spec = json.load(f)
    spec["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(spec))


def files_tokenizer(tok_dir):
    """transformers' Qwen2Tokenizer from vocab.json + merges.txt (+ added tokens), no tokenizer.json."""
    from transformers import Qwen2Tokenizer
    tmp = tempfile.mkdtemp(prefix="sailvl_tokfiles_")
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), tmp)
    try:
        return Qwen2Tokenizer.from_pretrained(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_corpus(texts, target_bytes=1 << 20):
    """The benchmark text: all corpus strings except the 10k runs, joined by '\\n', repeated until it
    reaches target_bytes (whole repeats). bench/bench_tokenizer.cpp builds the identical string."""
    unit = "\n".join(t for n, t in texts if not n.startswith("run_")) + "\n"
    reps = -(-target_bytes // len(unit.encode("utf-8")))
    return unit * reps


def measure_speed(tok, text, repeats=5):
    best = float("inf")
    n = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        n = len(enc.ids)
    return n, best


def main(out_dir=None, speed=True):
    from tokenizers import Tokenizer
    import tokenizers
    import transformers

    out_dir = out_dir or os.path.join(ROOT, "tests", "data", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    tok_json = os.path.join(TOK_DIR, "tokenizer.json")
    hf = Tokenizer.from_file(tok_json)
    plain = plain_tokenizer(tok_json)
    files = files_tokenizer(TOK_DIR)
    py = PyBpe(TOK_DIR)

    cases, disagreements = [], []
    texts = corpus()
    for name, text in texts:
        ids_special = hf.encode(text, add_special_tokens=False).ids
        ids_plain = plain.encode(text, add_special_tokens=False).ids
        files_special = files.encode(text, add_special_tokens=False)
        py_plain = py.encode(text)
        if files_special != ids_special:
            disagreements.append({"case": name, "what": "ids_special", "tokenizers": ids_special, "files": files_special})
        if py_plain != ids_plain:
            disagreements.append({"case": name, "what": "ids_plain", "tokenizers": ids_plain, "py_bpe": py_plain})
        dec = hf.decode(ids_special, skip_special_tokens=False)
        dec_skip = hf.decode(ids_special, skip_special_tokens=True)
        files_dec = files.decode(ids_special, skip_special_tokens=False)
        files_dec_skip = files.decode(ids_special, skip_special_tokens=True)
        if (files_dec, files_dec_skip) != (dec, dec_skip):
            disagreements.append({"case": name, "what": "decode", "tokenizers": [dec, dec_skip],
                                  "files": [files_dec, files_dec_skip]})
        cases.append({
            "name": name,
            "text": text,
            "ids_plain": ids_plain,
            "ids_special": ids_special,
            "decoded": dec,
            "decoded_skip_special": dec_skip,
            "decoded_plain": hf.decode(ids_plain, skip_special_tokens=False),
        })

    dcases = []
    for name, ids in decode_cases(py.vocab):
        d = hf.decode(ids, skip_special_tokens=False)
        ds = hf.decode(ids, skip_special_tokens=True)
        fd = files.decode(ids, skip_special_tokens=False)
        fds = files.decode(ids, skip_special_tokens=True)
        if (fd, fds) != (d, ds):
            disagreements.append({"case": name, "what": "decode_only", "tokenizers": [d, ds], "files": [fd, fds]})
        dcases.append({"name": name, "ids": ids, "decoded": d, "decoded_skip_special": ds})

    goldens = {
        "source": "tools/reference/make_tokenizer_goldens.py",
        "tokenizers_version": tokenizers.__version__,
        "transformers_version": transformers.__version__,
        "tokenizer_dir": "tests/data/sailvl-tokenizer",
        "note": "ids_plain: no added tokens matched (sailvl default); ids_special: HF default encode",
        "cases": cases,
        "decode_cases": dcases,
        "disagreements": disagreements,
    }
    with open(os.path.join(out_dir, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    text = bench_corpus(texts)
    if not speed:  # make_fixtures.py: fixtures only (timings are measurements, not fixtures)
        print(f"wrote {len(cases)} cases, {len(dcases)} decode cases, {len(disagreements)} disagreements")
        return goldens
    n_tok, secs = measure_speed(hf, text)
    n_tok_plain, secs_plain = measure_speed(plain, text)
    speed = {
        "source": "tools/reference/make_tokenizer_goldens.py (best of 5 single-threaded encode calls)",
        "tokenizers_version": tokenizers.__version__,
        "machine": platform.machine() + " " + platform.processor(),
        "corpus_bytes": len(text.encode("utf-8")),
        "special": {"tokens": n_tok, "seconds": secs, "tokens_per_s": n_tok / secs},
        "plain": {"tokens": n_tok_plain, "seconds": secs_plain, "tokens_per_s": n_tok_plain / secs_plain},
    }
    with open(os.path.join(out_dir, "hf_speed.json"), "w", encoding="utf-8") as f:
        json.dump(speed, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases, {len(dcases)} decode cases, {len(disagreements)} disagreements;"
          f" tokenizers: {n_tok / secs:,.0f} tok/s over {len(text.encode('utf-8'))} bytes")
    return goldens


if __name__ == "__main__":
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1] if len(sys.argv) > 1 else None)
