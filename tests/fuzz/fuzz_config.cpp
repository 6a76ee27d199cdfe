// config.json: a parsed config always satisfies the validation rules (divisible heads, positive
// sizes), or parsing throws sailvl::Error.
#include "model/config.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c = sailvl::model::parse_config(as_text(data, size), "fuzz/config.json");
    SAILVL_FUZZ_EXPECT(c.llm.heads > 0 && c.llm.kv_heads > 0 && c.llm.heads % c.llm.kv_heads == 0);
    SAILVL_FUZZ_EXPECT(c.llm.hidden == c.llm.heads * c.llm.head_dim);
    SAILVL_FUZZ_EXPECT(c.vision.heads > 0 && c.vision.hidden % c.vision.heads == 0);
    SAILVL_FUZZ_EXPECT(c.llm.vocab > 0 && c.llm.layers > 0 && c.vision.layers > 0);
  } catch (const sailvl::Error&) {
  }
  return 0;
}
