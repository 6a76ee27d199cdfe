// Tokenizer files: the input is split into the files of a tokenizer directory (first byte picks
// the form) and loaded; the loader validates (ids unique and in range, merges known, 256 byte
// symbols) or throws sailvl::Error. Files go to a private tmpfs directory.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/fuzz/fuzz_common.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using namespace sailvl::tokenizer;

static void put(const fs::path& p, std::string_view s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = fs::temp_directory_path() / ("sailvl-fuzz-tok-" + std::to_string(::getpid()));
  if (size == 0) return 0;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string_view rest = as_text(data + 1, size - 1);
  TokenizerFormat form;
  if (data[0] & 1) {
    put(dir / "tokenizer.json", rest);
    form = TokenizerFormat::TokenizerJson;
  } else {
    // vocab.json \0 merges.txt \0 added_tokens.json
    const size_t a = rest.find('\0');
    const size_t b = a == std::string_view::npos ? a : rest.find('\0', a + 1);
    put(dir / "vocab.json", rest.substr(0, a));
    put(dir / "merges.txt",
        a == std::string_view::npos ? "" : rest.substr(a + 1, b == std::string_view::npos ? b : b - a - 1));
    if (b != std::string_view::npos) put(dir / "added_tokens.json", rest.substr(b + 1));
    form = TokenizerFormat::VocabMerges;
  }
  try {
    const Tokenizer t = Tokenizer::load(dir.string(), form);
    const auto ids = t.encode("Hello, 世界!  \n", {});
    for (TokenId id : ids) SAILVL_FUZZ_EXPECT(id >= 0 && id < t.size());
    (void)t.decode(ids);
  } catch (const sailvl::Error&) {
  }
  return 0;
}
