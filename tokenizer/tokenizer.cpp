// Tokenizer: encode, decode and the streaming decoder (the algorithm is described in tokenizer.h).
#include "tokenizer/tokenizer.h"

#include "tensor/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace sailvl::tokenizer {

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir, TokenizerFormat format) {
  return Tokenizer(load_tokenizer_impl(dir, format));
}

// ---------------------------------------------------------------- encode

// BPE of one piece, through the cache for short pieces.
void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<TokenId>& out) const {
  if (piece.size() == 1) {  // the commonest piece of all: a byte
    out.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (static_cast<int64_t>(piece.size()) > kCacheMaxPieceBytes) {
    bpe_merge(*this, piece, out);
    return;
  }
  const std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (auto it = cache.find(key); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  bpe_merge(*this, piece, out);
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kCacheMaxEntries) cache.clear();  // crude bound; refills with what is frequent
  cache.emplace(key, std::vector<TokenId>(out.begin() + static_cast<std::ptrdiff_t>(start), out.end()));
}

// NFC -> split -> BPE for text that holds no added token.
void Tokenizer::Impl::encode_text(std::string_view text, std::vector<TokenId>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (nfc && nfc_normalize(text, normalized)) text = normalized;
  splitter->split(text, [&](int64_t b, int64_t e) {
    encode_piece(text.substr(static_cast<size_t>(b), static_cast<size_t>(e - b)), out);
  });
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
  std::string repaired;
  if (auto bad = find_invalid_utf8(text)) {
    if (!opt.replace_invalid)
      fail(ErrorKind::BadTokenizer, "invalid UTF-8 in the text at byte offset ", *bad,
           " (pass --replace-invalid to substitute U+FFFD)");
    repaired = replace_invalid_utf8(text);
    text = repaired;
  }
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (!opt.parse_special || impl_->added.empty()) {
    impl_->encode_text(text, out);
    return out;
  }
  // Like tokenizers' AddedVocabulary: first the tokens matched on raw text, then, in what is left
  // (normalised), the tokens matched on normalised text.
  for (const Segment& s : split_added_tokens(text, impl_->added, /*want_normalized=*/false)) {
    if (s.token >= 0) {
      out.push_back(s.token);
      continue;
    }
    std::string_view piece = text.substr(static_cast<size_t>(s.begin), static_cast<size_t>(s.end - s.begin));
    std::string normalized;
    if (impl_->nfc && nfc_normalize(piece, normalized)) piece = normalized;
    for (const Segment& t : split_added_tokens(piece, impl_->added, /*want_normalized=*/true)) {
      if (t.token >= 0) {
        out.push_back(t.token);
        continue;
      }
      // Already NFC: NFC is idempotent, so encode_text's second pass only costs a scan.
      impl_->encode_text(piece.substr(static_cast<size_t>(t.begin), static_cast<size_t>(t.end - t.begin)), out);
    }
  }
  return out;
}

// ---------------------------------------------------------------- decode

const std::string& Tokenizer::token_bytes(TokenId id) const {
  if (id < 0 || id >= size())
    fail(ErrorKind::BadTokenizer, "token id ", id, " is outside the tokenizer (size ", size(), ")");
  return impl_->bytes[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  for (TokenId id : ids) {
    const std::string& b = token_bytes(id);
    if (skip_special && is_special(id)) continue;
    bytes += b;
  }
  return replace_invalid_utf8(bytes);
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(TokenId id) {
  const std::string& b = tok_->token_bytes(id);
  if (skip_special_ && tok_->is_special(id)) return {};
  pending_ += b;
  // Emit everything up to an incomplete (but so far valid) character at the end. Invalid bytes
  // before it are final: no later byte can make them valid, so they are replaced now.
  const int64_t n = utf8_complete_prefix(pending_);
  if (n == 0) return {};
  std::string out = replace_invalid_utf8(std::string_view(pending_).substr(0, static_cast<size_t>(n)));
  pending_.erase(0, static_cast<size_t>(n));
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = replace_invalid_utf8(pending_);
  pending_.clear();
  return out;
}

// ---------------------------------------------------------------- lookups

std::optional<TokenId> Tokenizer::added_token_id(std::string_view content) const {
  auto it = impl_->added_by_content.find(std::string(content));
  if (it == impl_->added_by_content.end()) return std::nullopt;
  return it->second;
}

TokenId Tokenizer::require_added_token(std::string_view content) const {
  if (auto id = added_token_id(content)) return *id;
  fail(ErrorKind::BadTokenizer, impl_->source, ": the tokenizer has no added token \"", escape_for_print(content),
       "\" (SAIL-VL needs it)");
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = added_token_id(token)) return id;
  std::string raw;
  if (!byte_level_to_bytes(token, raw)) return std::nullopt;
  auto it = impl_->vocab.find(raw);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && id < size() && impl_->kind[static_cast<size_t>(id)] == 2;
}
bool Tokenizer::is_added(TokenId id) const {
  return id >= 0 && id < size() && impl_->kind[static_cast<size_t>(id)] != 0;
}
int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
int64_t Tokenizer::size() const { return static_cast<int64_t>(impl_->bytes.size()); }
int64_t Tokenizer::num_merges() const { return impl_->num_merges; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace sailvl::tokenizer
