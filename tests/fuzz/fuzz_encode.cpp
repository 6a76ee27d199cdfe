// Encode/decode with the real SAIL-VL tokenizer. The first byte is a flag byte:
//   bit 0: parse special tokens;  bit 1: replace invalid UTF-8 instead of throwing.
// Invariants: ids are in range; without special parsing no added-token id appears; and for valid
// UTF-8 input, decode(encode(x)) == NFC(x) (Qwen2 normalises to NFC, so we compare with the NFC
// form computed by utf8proc).
#include <utf8proc.h>

#include <memory>

#include "tests/fuzz/fuzz_common.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl::tokenizer;

static const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(fuzz_source_dir() + "/tests/data/sailvl-tokenizer");
  return t;
}

static std::string nfc(std::string_view s) {
  utf8proc_uint8_t* out = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(std::string(s).c_str()));
  if (!out) return std::string(s);
  std::string r(reinterpret_cast<char*>(out));
  std::free(out);
  return r;
}

// The real tokenizer loads once, before the first input: under ASan on a busy machine the load
// alone can exceed the per-input -timeout, which libFuzzer would report as a (false) finding.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string_view text = as_text(data + 1, size - 1);
  if (text.find('\0') != std::string_view::npos) return 0;  // C-string NFC comparison below
  EncodeOptions opt;
  opt.parse_special = flags & 1;
  opt.replace_invalid = flags & 2;
  std::vector<TokenId> ids;
  try {
    ids = tok().encode(text, opt);
  } catch (const sailvl::Error&) {
    SAILVL_FUZZ_EXPECT(!opt.replace_invalid);  // only invalid UTF-8 may throw
    SAILVL_FUZZ_EXPECT(find_invalid_utf8(text).has_value());
    return 0;
  }
  for (TokenId id : ids) {
    SAILVL_FUZZ_EXPECT(id >= 0 && id < tok().size());
    if (!opt.parse_special) SAILVL_FUZZ_EXPECT(!tok().is_added(id));
  }
  if (!opt.parse_special && !find_invalid_utf8(text)) SAILVL_FUZZ_EXPECT(tok().decode(ids) == nfc(text));
  return 0;
}
