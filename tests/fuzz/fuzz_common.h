// Shared bits of the libFuzzer harnesses: every harness feeds untrusted bytes to one parser and
// accepts exactly two outcomes — a result, or sailvl::Error. Anything else (a crash, a sanitizer
// report, another exception type, a hang) is a finding.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tensor/error.h"

#define SAILVL_FUZZ_EXPECT(cond)                                                     \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      __builtin_printf("invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The repository root, for harnesses that need the real tokenizer (set by CMake).
inline std::string fuzz_source_dir() { return SAILVL_SOURCE_DIR; }
