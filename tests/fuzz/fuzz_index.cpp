// model.safetensors.index.json: either an error, or a weight map whose every shard name is a plain
// basename (no '/', '\\', '..', absolute paths) — the property that keeps a hostile index from
// opening files outside the checkpoint directory.
#include "loader/weights.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto idx = sailvl::loader::parse_shard_index(as_text(data, size), "fuzz/model.safetensors.index.json");
    for (const auto& [tensor, shard] : idx.weight_map) {
      SAILVL_FUZZ_EXPECT(!shard.empty() && shard.find('/') == std::string::npos);
      SAILVL_FUZZ_EXPECT(shard.find('\\') == std::string::npos && shard != "." && shard != "..");
    }
  } catch (const sailvl::Error&) {
  }
  return 0;
}
