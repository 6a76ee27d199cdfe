// Qwen2 byte-level BPE tokenizer (docs/MODEL.md §10): load, validate, encode, decode, stream-decode.
//
// Encoding a string, step by step (the order of Hugging Face `tokenizers` for Qwen2's tokenizer.json):
//   1. (only with EncodeOptions::parse_special) split out added tokens — leftmost-longest match of
//      their literal content, honouring lstrip/rstrip/single_word/normalized — and emit their ids;
//   2. NFC-normalise each remaining piece (utf8proc);
//   3. split it with the Qwen2 pre-tokenizer regex (PCRE2, UTF|UCP, JIT when available):
//        (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   4. BPE each piece: start from its bytes (each byte is a symbol, spelled in the vocabulary through
//      GPT-2's bytes_to_unicode map), repeatedly merge the adjacent pair of lowest merge rank (ties: the
//      leftmost) until no pair has a rank; the symbols' ids are the output. O(n log n) with a heap.
// There is no BOS/EOS: the chat template inserts control tokens by id (runtime/chat_template.h).
//
// Decoding: ids -> bytes (vocab tokens through the inverse byte map, added tokens as their content)
// -> UTF-8, where invalid sequences become U+FFFD, one per maximal invalid subpart (as Rust's
// String::from_utf8_lossy, which `tokenizers`' ByteLevel decoder uses).
//
// Policy (docs/VALIDATION.md): user text is encoded with parse_special = false, so typing "<|im_end|>"
// or "<IMG_CONTEXT>" yields ordinary text tokens; no added token (special or not) is matched.
// parse_special = true reproduces Hugging Face's default `encode(text)`.
//
// Files: <dir>/tokenizer.json, or <dir>/vocab.json + merges.txt (+ added_tokens.json,
// tokenizer_config.json's added_tokens_decoder). Every rule violated gives ErrorKind::BadTokenizer
// naming the file and the entry.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sailvl::tokenizer {

using TokenId = int32_t;

enum class TokenizerFormat {
  Auto,           // tokenizer.json if present, else vocab.json + merges.txt
  TokenizerJson,  // tokenizer.json only
  VocabMerges,    // vocab.json + merges.txt (+ added_tokens.json, tokenizer_config.json)
};

struct AddedToken {
  TokenId id = -1;
  std::string content;       // literal UTF-8 text, e.g. "<|im_end|>"
  bool special = true;       // skipped by decode(skip_special = true)
  bool lstrip = false;       // a match also swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched against the NFC-normalised text instead of the raw text
};

struct EncodeOptions {
  bool parse_special = false;    // match added tokens in the text (HF default behaviour)
  bool replace_invalid = false;  // invalid UTF-8 -> U+FFFD instead of an error naming the byte offset
};

class Tokenizer {
 public:
  // Loads and validates a tokenizer directory. Throws Error(BadTokenizer).
  static Tokenizer load(const std::string& dir, TokenizerFormat format = TokenizerFormat::Auto);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids. Invalid UTF-8 throws Error(BadTokenizer) with the byte offset unless
  // opt.replace_invalid is set.
  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opt = {}) const;

  // Ids -> text. Ids out of range throw Error(BadTokenizer).
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  // The raw bytes a token stands for (vocab tokens: un-byte-mapped; added tokens: their content).
  const std::string& token_bytes(TokenId id) const;
  // Id of an added token by its content ("<|im_end|>", "<IMG_CONTEXT>"); nullopt if none.
  std::optional<TokenId> added_token_id(std::string_view content) const;
  // Same, but a missing token is Error(BadTokenizer) naming what needed it.
  TokenId require_added_token(std::string_view content) const;
  // Id of a vocabulary entry spelled in byte-level form ("Ġthe"), or an added token's content.
  std::optional<TokenId> token_to_id(std::string_view token) const;

  bool is_special(TokenId id) const;  // an added token with special = true
  bool is_added(TokenId id) const;
  int64_t vocab_size() const;  // BPE vocabulary entries (151,643 for Qwen2)
  int64_t size() const;        // vocab + added tokens (151,674 for SAIL-VL): max id + 1
  int64_t num_merges() const;
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& source() const;  // which file(s) it was loaded from, for messages

  struct Impl;  // opaque; defined in tokenizer/tokenizer_internal.h

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokeniser for generation: push ids one at a time, get back only text that ends at a
// complete UTF-8 character, so a multi-byte character spread over several tokens is never split.
// flush() returns what is left, with invalid or incomplete bytes replaced by U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  std::string push(TokenId id);
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;  // bytes not yet emitted (an incomplete character, or invalid bytes)
};

// ---- UTF-8 helpers (shared with the CLI and the chat template) ----

// Byte offset of the first byte that starts an invalid UTF-8 sequence (overlong forms, surrogates,
// > U+10FFFF and truncated sequences are invalid), or nullopt if `s` is valid.
std::optional<int64_t> find_invalid_utf8(std::string_view s);
// Replace each maximal invalid subpart with U+FFFD (Unicode §3.9 / Rust from_utf8_lossy).
std::string replace_invalid_utf8(std::string_view bytes);
// Length of the longest prefix of `s` that ends on a character boundary, treating a trailing
// incomplete-but-valid-so-far sequence as not yet complete (used by StreamDecoder).
int64_t utf8_complete_prefix(std::string_view s);

}  // namespace sailvl::tokenizer
