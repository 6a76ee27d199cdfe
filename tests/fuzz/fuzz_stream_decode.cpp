// Streaming detokenisation of arbitrary id sequences (pairs of bytes -> ids modulo the vocab):
// every emitted piece is valid UTF-8, and the pieces plus flush() equal the lossy decode of all.
#include "tests/fuzz/fuzz_common.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl::tokenizer;

static const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(fuzz_source_dir() + "/tests/data/sailvl-tokenizer");
  return t;
}

// The real tokenizer loads once, before the first input: under ASan on a busy machine the load
// alone can exceed the per-input -timeout, which libFuzzer would report as a (false) finding.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<TokenId> ids;
  for (size_t i = 0; i + 2 < size; i += 3)
    ids.push_back(static_cast<TokenId>((data[i] | data[i + 1] << 8 | data[i + 2] << 16) % tok().size()));
  StreamDecoder dec(tok(), /*skip_special=*/true);
  std::string all;
  for (TokenId id : ids) {
    const std::string piece = dec.push(id);
    SAILVL_FUZZ_EXPECT(!find_invalid_utf8(piece).has_value());
    all += piece;
  }
  const std::string tail = dec.flush();
  SAILVL_FUZZ_EXPECT(!find_invalid_utf8(tail).has_value());
  all += tail;
  SAILVL_FUZZ_EXPECT(all == replace_invalid_utf8(tok().decode(ids, /*skip_special=*/true)));
  return 0;
}
