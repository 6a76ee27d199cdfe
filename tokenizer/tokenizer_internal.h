// Internals of tokenizer/tokenizer.h shared by its implementation files (not a public API):
//   tokenizer_load.cpp  files -> validated Tokenizer::Impl
//   pretokenize.cpp     GPT-2 byte map, NFC, the split regex, the added-token splitter, UTF-8 helpers
//   bpe.cpp             the merge loop
//   tokenizer.cpp       encode / decode / StreamDecoder
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sailvl::tokenizer {

// ---- GPT-2 bytes_to_unicode (openai/gpt-2 encoder.py) ----
// The 188 printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves; the other 68 bytes map, in
// increasing order, to U+0100, U+0101, ... so every byte has a visible, non-space spelling.
struct ByteMap {
  std::array<uint32_t, 256> to_cp{};   // byte -> code point
  std::array<int16_t, 324> to_byte{};  // code point (< 324) -> byte, -1 if not in the alphabet
  ByteMap();
};
const ByteMap& byte_map();
// "Ġthe" -> " the"; false if a code point is outside the byte-level alphabet or `s` is not UTF-8.
bool byte_level_to_bytes(std::string_view s, std::string& out);
std::string bytes_to_byte_level(std::string_view bytes);

// ---- pre-tokenizer ----
// The Split pre-tokenizer (behavior "Isolated"): matches of the regex and the gaps between them,
// in order, each becomes a piece. PCRE2 with UTF|UCP, JIT-compiled when the library supports it.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern, const std::string& where);
  RegexSplitter(RegexSplitter&&) noexcept;
  ~RegexSplitter();
  // Calls on_piece(begin, end) for every piece of `text` (valid UTF-8), in order.
  template <typename F>
  void split(std::string_view text, F&& on_piece) const;
  bool jit() const { return jit_; }

 private:
  // Non-template core: appends [begin, end) offsets of pieces to `out`.
  void split_offsets(std::string_view text, std::vector<int64_t>& out) const;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

template <typename F>
void RegexSplitter::split(std::string_view text, F&& on_piece) const {
  std::vector<int64_t> offs;
  split_offsets(text, offs);
  for (size_t i = 0; i + 1 < offs.size(); i += 2) on_piece(offs[i], offs[i + 1]);
}

// NFC normalisation (utf8proc). `text` must be valid UTF-8. Returns false (and leaves `out`
// untouched) when the text is trivially NFC (no code point >= U+0300), so callers can skip a copy.
bool nfc_normalize(std::string_view text, std::string& out);

// One piece of text after the added-token split: either an added token or text to BPE-encode.
struct Segment {
  int64_t begin = 0, end = 0;  // byte range in the string that was split
  TokenId token = -1;          // >= 0: an added token
};
// Leftmost-longest split of `text` by the added tokens that have normalized == want_normalized,
// like tokenizers' AddedVocabulary (aho-corasick, MatchKind::LeftmostLongest), with the
// single_word / lstrip / rstrip rules applied to each match.
std::vector<Segment> split_added_tokens(std::string_view text, const std::vector<AddedToken>& tokens,
                                        bool want_normalized);

// ---- BPE ----
struct Merge {
  int32_t rank = 0;     // position in merges (lower merges first)
  TokenId merged = -1;  // id of left + right
};

inline uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// (left id, right id) -> Merge. Open addressing with linear probing: the merge loop does one lookup
// per candidate pair, and a flat table is several times faster than std::unordered_map here.
class MergeTable {
 public:
  // Returns false (and changes nothing) if the pair is already present.
  bool insert(TokenId a, TokenId b, Merge m) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const uint64_t key = pair_key(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return false;
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, m};
        ++size_;
        return true;
      }
    }
  }
  const Merge* find(TokenId a, TokenId b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pair_key(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  int64_t size() const { return static_cast<int64_t>(size_); }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are < 2^24, so never a real key
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static uint64_t hash(uint64_t k) {  // murmur3 finaliser
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty)
        insert(static_cast<TokenId>(s.key >> 32), static_cast<TokenId>(s.key & 0xFFFFFFFFu), s.merge);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

// The loaded tokenizer. Immutable after load except the piece cache (guarded by its mutex).
struct Tokenizer::Impl {
  std::string source;                              // "DIR/tokenizer.json" or "DIR/vocab.json + merges.txt"
  std::vector<std::string> bytes;                  // id -> raw bytes (added tokens: content)
  std::vector<uint8_t> kind;                       // id -> 0 vocab, 1 added, 2 added special
  std::unordered_map<std::string, TokenId> vocab;  // raw bytes -> id (BPE vocabulary only)
  MergeTable merges;                               // (left id, right id) -> rank, merged id
  std::array<TokenId, 256> byte_id{};              // single-byte symbol ids
  std::vector<AddedToken> added;
  std::unordered_map<std::string, TokenId> added_by_content;
  int64_t vocab_size = 0;
  int64_t num_merges = 0;
  bool nfc = true;             // normalizer: NFC or none
  bool ignore_merges = false;  // BPE.ignore_merges: a piece that is itself a token is not merged
  std::unique_ptr<RegexSplitter> splitter;

  // Cache of short pieces (raw bytes -> ids): natural text repeats its words.
  static constexpr int64_t kCacheMaxPieceBytes = 64;
  static constexpr size_t kCacheMaxEntries = 1 << 16;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache;

  // Appends the ids of one pre-tokenized piece (raw bytes).
  void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;
  // Appends the ids of normalised-or-not text without added tokens: NFC, split, BPE.
  void encode_text(std::string_view text, std::vector<TokenId>& out) const;
};

// The merge loop on the bytes of one piece (bpe.cpp).
void bpe_merge(const Tokenizer::Impl& t, std::string_view piece, std::vector<TokenId>& out);

// Builds a validated Impl from a directory (tokenizer_load.cpp).
std::unique_ptr<Tokenizer::Impl> load_tokenizer_impl(const std::string& dir, TokenizerFormat format);

}  // namespace sailvl::tokenizer
