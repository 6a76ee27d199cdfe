// safetensors: header length, JSON, dtypes, offsets, coverage — parse_safetensors must either
// return a header whose every tensor lies inside the data section, or throw sailvl::Error.
#include "loader/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = sailvl::loader::parse_safetensors({data, size}, "fuzz.safetensors");
    const uint64_t data_len = size - 8 - h.header_len;
    for (const auto& t : h.tensors) {
      SAILVL_FUZZ_EXPECT(t.begin <= t.end && t.end <= data_len);
      SAILVL_FUZZ_EXPECT(static_cast<uint64_t>(sailvl::shape_numel(t.shape)) * sailvl::dtype_size(t.dtype) ==
                         t.end - t.begin);
    }
  } catch (const sailvl::Error&) {
  }
  return 0;
}
