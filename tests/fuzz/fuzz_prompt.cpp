// Prompt building: question text + tiles per image from the input. Either an error, or a prompt
// whose <IMG_CONTEXT> count is 256 x total tiles and whose ids are all in range; user text never
// yields control tokens (special parsing off).
#include "runtime/chat_template.h"
#include "tests/fuzz/fuzz_common.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl;

static const tokenizer::Tokenizer& tok() {
  static const tokenizer::Tokenizer t = tokenizer::Tokenizer::load(fuzz_source_dir() + "/tests/data/sailvl-tokenizer");
  return t;
}

// The real tokenizer loads once, before the first input: under ASan on a busy machine the load
// alone can exceed the per-input -timeout, which libFuzzer would report as a (false) finding.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  runtime::ChatRequest req;
  const int n_images = data[0] % 4;
  int64_t total = 0;
  for (int k = 0; k < n_images; ++k) {
    const int64_t t = 1 + (data[1] >> (2 * k)) % 4;
    req.tiles.push_back(t);
    total += t;
  }
  req.layout = static_cast<runtime::ImageLayout>(data[0] / 4 % 4);
  req.question = std::string(as_text(data + 2, size - 2));
  try {
    const auto p = runtime::build_chat_prompt(tok(), req);
    const auto ctx = tok().require_added_token("<IMG_CONTEXT>");
    int64_t count = 0;
    for (auto id : p.ids) {
      SAILVL_FUZZ_EXPECT(id >= 0 && id < tok().size());
      count += id == ctx;
    }
    SAILVL_FUZZ_EXPECT(count == 256 * total && p.image_context_tokens == count);
  } catch (const Error&) {
  }
  return 0;
}
