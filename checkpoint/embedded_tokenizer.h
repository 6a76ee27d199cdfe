// The SAIL-VL tokenizer files, compiled into the binary so `sailvl make-model` can write a complete
// checkpoint without reading the source tree at run time (tests/data/sailvl-tokenizer/ is the source;
// CMake rebuilds embedded_tokenizer.cpp when one of them changes, via OBJECT_DEPENDS).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sailvl::checkpoint {

struct EmbeddedFile {
  std::string name;        // "tokenizer.json", ...
  std::string_view bytes;  // the file's contents
};

// tokenizer.json, vocab.json, merges.txt, added_tokens.json, tokenizer_config.json.
const std::vector<EmbeddedFile>& embedded_tokenizer_files();

// tests/data/images/demo/photo.jpg (the README demo's picture; `sailvl quantize` asks about it in
// its drift report).
std::string_view embedded_demo_photo();

}  // namespace sailvl::checkpoint
