// Pre-tokenisation for the Qwen2 tokenizer: GPT-2's byte map, NFC, the split regex, the added-token
// splitter and UTF-8 helpers. See tokenizer/tokenizer.h for the order of the steps.
//
// Sources: openai/gpt-2 encoder.py (bytes_to_unicode); Hugging Face tokenizers
// (normalizers/unicode.rs NFC, pre_tokenizers/split.rs "Isolated", added_vocabulary.rs);
// Unicode Standard §3.9 "U+FFFD Substitution of Maximal Subparts" for lossy decoding.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <cstring>

#include "loader/json_strict.h"
#include "tensor/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace sailvl::tokenizer {

// ---------------------------------------------------------------- byte map

ByteMap::ByteMap() {
  to_byte.fill(-1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    to_cp[b] = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    to_byte[to_cp[b]] = static_cast<int16_t>(b);
  }
}

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

bool byte_level_to_bytes(std::string_view s, std::string& out) {
  out.clear();
  const ByteMap& m = byte_map();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i++];
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < s.size() && (p[i + 1] & 0xC0) == 0x80) {
      cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);  // the alphabet is below U+0800: 2 bytes at most
      i += 2;
    } else {
      return false;
    }
    if (cp >= m.to_byte.size() || m.to_byte[cp] < 0) return false;
    out.push_back(static_cast<char>(m.to_byte[cp]));
  }
  return true;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    const uint32_t cp = byte_map().to_cp[b];
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// ---------------------------------------------------------------- UTF-8

std::optional<int64_t> find_invalid_utf8(std::string_view s) {
  const size_t bad = loader::first_invalid_utf8(s);
  if (bad == std::string_view::npos) return std::nullopt;
  return static_cast<int64_t>(bad);
}

// Length of the valid sequence at p[0..n) (1..4), or -(length of the maximal invalid subpart) when
// it is not valid. Table 3-7 of the Unicode Standard gives the allowed second-byte ranges.
static int utf8_sequence(const uint8_t* p, size_t n) {
  const unsigned c = p[0];
  if (c < 0x80) return 1;
  int len;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (static_cast<size_t>(k) >= n) return -k;  // truncated: the subpart is what we have
    const unsigned b = p[k];
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return -k;
  }
  return len;
}

std::string replace_invalid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t i = 0;
  while (i < bytes.size()) {
    const int r = utf8_sequence(p + i, bytes.size() - i);
    if (r > 0) {
      out.append(bytes.data() + i, static_cast<size_t>(r));
      i += static_cast<size_t>(r);
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += static_cast<size_t>(-r);
    }
  }
  return out;
}

int64_t utf8_complete_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const int64_t n = static_cast<int64_t>(s.size());
  // A character is at most 4 bytes, so an incomplete tail starts within the last 3 bytes.
  for (int64_t q = n - 1; q >= 0 && q >= n - 3; --q) {
    if ((p[q] & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const int r = utf8_sequence(p + q, static_cast<size_t>(n - q));
    // Incomplete but valid so far: the subpart reaches the end of the buffer.
    if (r < 0 && q + (-r) == n && p[q] >= 0xC2 && p[q] <= 0xF4) return q;
    return n;
  }
  return n;
}

// ---------------------------------------------------------------- NFC

bool nfc_normalize(std::string_view text, std::string& out) {
  // Every code point below U+0300 is NFC-stable and has combining class 0, so text made only of
  // them is already NFC. U+0300 is the first whose UTF-8 lead byte is 0xCC.
  bool trivial = true;
  for (unsigned char c : text)
    if (c >= 0xCC) {
      trivial = false;
      break;
    }
  if (trivial) return false;
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &result, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    std::free(result);
    fail(ErrorKind::BadTokenizer, "NFC normalisation failed: ", utf8proc_errmsg(n));
  }
  out.assign(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  std::free(result);
  return true;
}

// ---------------------------------------------------------------- the split regex

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& where) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail(ErrorKind::BadTokenizer, where, ": pre-tokenizer regex does not compile at offset ", err_off, ": ",
         reinterpret_cast<const char*>(msg));
  }
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::RegexSplitter(RegexSplitter&& o) noexcept : code_(o.code_), jit_(o.jit_) { o.code_ = nullptr; }

RegexSplitter::~RegexSplitter() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

namespace {
// Match data and JIT stack, one set per thread, reused by every call (creating a JIT stack maps
// memory: doing it per call made encoding text with many added tokens 20x slower). Neither depends
// on the pattern: only the whole-match offsets (ovector pair 0) are read.
struct MatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  MatchState() {
    md = pcre2_match_data_create(1, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    if (!md || !mc) throw std::bad_alloc();
    if (js) pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~MatchState() {
    if (js) pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
};

MatchState& match_state() {
  thread_local MatchState st;
  return st;
}
}  // namespace

void RegexSplitter::split_offsets(std::string_view text, std::vector<int64_t>& out) const {
  const auto* code = static_cast<const pcre2_code*>(code_);
  MatchState& st = match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0;
  while (pos < n) {
    // The text was validated as UTF-8 by the caller: skip PCRE2's own check (it is O(n) per call).
    const int rc = pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, st.md, st.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {  // (rc == 0 only says the ovector is too small for the groups; pair 0 is set)
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail(ErrorKind::Internal, "pre-tokenizer regex failed at byte ", pos, ": ", reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
    const size_t b = ov[0], e = ov[1];
    if (b > pos) out.insert(out.end(), {static_cast<int64_t>(pos), static_cast<int64_t>(b)});  // a gap
    if (e == b) {
      // Empty match (not produced by the Qwen2 pattern): step one character to make progress.
      size_t step = 1;
      while (b + step < n && (static_cast<unsigned char>(text[b + step]) & 0xC0) == 0x80) ++step;
      out.insert(out.end(), {static_cast<int64_t>(b), static_cast<int64_t>(b + step)});
      pos = b + step;
      continue;
    }
    out.insert(out.end(), {static_cast<int64_t>(b), static_cast<int64_t>(e)});
    pos = e;
  }
  if (pos < n) out.insert(out.end(), {static_cast<int64_t>(pos), static_cast<int64_t>(n)});
}

// ---------------------------------------------------------------- added tokens

static uint32_t decode_cp(std::string_view s, size_t i, int* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  int32_t cp = 0;
  const utf8proc_ssize_t r = utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  *len = r > 0 ? static_cast<int>(r) : 1;
  return r > 0 ? static_cast<uint32_t>(cp) : 0xFFFD;
}

// The code point that ends just before byte i (i > 0).
static uint32_t cp_before(std::string_view s, size_t i, size_t* start) {
  size_t j = i - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  int len = 0;
  *start = j;
  return decode_cp(s, j, &len);
}

static bool is_whitespace_cp(uint32_t cp) {  // Rust char::is_whitespace (White_Space property)
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static bool is_word_cp(uint32_t cp) {  // alphanumeric or '_' (added_vocabulary.rs single_word)
  if (cp == '_') return true;
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

std::vector<Segment> split_added_tokens(std::string_view text, const std::vector<AddedToken>& tokens,
                                        bool want_normalized) {
  std::vector<const AddedToken*> cands;
  for (const auto& t : tokens)
    if (t.normalized == want_normalized && !t.content.empty()) cands.push_back(&t);
  std::vector<Segment> out;
  const int64_t n = static_cast<int64_t>(text.size());
  if (cands.empty()) {
    if (n > 0) out.push_back({0, n, -1});
    return out;
  }
  std::array<bool, 256> first{};  // quick reject: can a token start with this byte?
  for (const auto* t : cands) first[static_cast<unsigned char>(t->content[0])] = true;

  int64_t text_start = 0;  // start of the pending text segment
  int64_t i = 0;
  while (i < n) {
    if (!first[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    // Leftmost-longest: the longest token that starts at i.
    const AddedToken* best = nullptr;
    for (const auto* t : cands) {
      const int64_t len = static_cast<int64_t>(t->content.size());
      if (len <= n - i && (!best || len > static_cast<int64_t>(best->content.size())) &&
          text.compare(static_cast<size_t>(i), static_cast<size_t>(len), t->content) == 0)
        best = t;
    }
    if (!best) {
      ++i;
      continue;
    }
    int64_t b = i, e = i + static_cast<int64_t>(best->content.size());
    if (best->single_word) {
      size_t s = 0;
      int len = 0;
      const bool start_ok = b == 0 || !is_word_cp(cp_before(text, static_cast<size_t>(b), &s));
      const bool end_ok = e == n || !is_word_cp(decode_cp(text, static_cast<size_t>(e), &len));
      if (!start_ok || !end_ok) {  // not a match: continue after it (matches do not overlap)
        i = e;
        continue;
      }
    }
    if (best->lstrip) {
      while (b > text_start) {
        size_t s = 0;
        if (!is_whitespace_cp(cp_before(text, static_cast<size_t>(b), &s))) break;
        b = static_cast<int64_t>(s);
      }
    }
    if (best->rstrip) {
      while (e < n) {
        int len = 0;
        if (!is_whitespace_cp(decode_cp(text, static_cast<size_t>(e), &len))) break;
        e += len;
      }
    }
    if (b > text_start) out.push_back({text_start, b, -1});
    out.push_back({b, e, best->id});
    text_start = e;
    i = e;
  }
  if (text_start < n) out.push_back({text_start, n, -1});
  return out;
}

}  // namespace sailvl::tokenizer
