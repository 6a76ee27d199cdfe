// Embeds tests/data/sailvl-tokenizer/* (and the demo photo) with the GNU assembler's .incbin (no generated sources,
// no xxd step; works for both the CPU-only and the CUDA build since this is a plain host .cpp).
// Each file gets a begin and an end label; the bytes are read-only data of the binary.
#include "checkpoint/embedded_tokenizer.h"

#define SAILVL_TOKDIR SAILVL_SOURCE_DIR "/tests/data/sailvl-tokenizer/"
#define SAILVL_DEMO_PHOTO SAILVL_SOURCE_DIR "/tests/data/images/demo/photo.jpg"

// One file: sailvl_tok_<sym>_begin .. sailvl_tok_<sym>_end in .rodata.
#define SAILVL_INCBIN(sym, path)                    \
  asm(".section .rodata\n"                          \
      ".balign 16\n"                                \
      ".global sailvl_tok_" #sym                    \
      "_begin\n"                                    \
      ".hidden sailvl_tok_" #sym                    \
      "_begin\n"                                    \
      "sailvl_tok_" #sym                            \
      "_begin:\n"                                   \
      ".incbin \"" path                             \
      "\"\n"                                        \
      ".global sailvl_tok_" #sym                    \
      "_end\n"                                      \
      ".hidden sailvl_tok_" #sym                    \
      "_end\n"                                      \
      "sailvl_tok_" #sym                            \
      "_end:\n"                                     \
      ".previous\n");                               \
  extern "C" const char sailvl_tok_##sym##_begin[]; \
  extern "C" const char sailvl_tok_##sym##_end[]

SAILVL_INCBIN(tokenizer_json, SAILVL_TOKDIR "tokenizer.json");
SAILVL_INCBIN(vocab_json, SAILVL_TOKDIR "vocab.json");
SAILVL_INCBIN(merges_txt, SAILVL_TOKDIR "merges.txt");
SAILVL_INCBIN(added_tokens_json, SAILVL_TOKDIR "added_tokens.json");
SAILVL_INCBIN(tokenizer_config_json, SAILVL_TOKDIR "tokenizer_config.json");
SAILVL_INCBIN(demo_photo_jpg, SAILVL_DEMO_PHOTO);

namespace sailvl::checkpoint {

static std::string_view span(const char* b, const char* e) { return {b, static_cast<size_t>(e - b)}; }

const std::vector<EmbeddedFile>& embedded_tokenizer_files() {
  static const std::vector<EmbeddedFile> files = {
      {"tokenizer.json", span(sailvl_tok_tokenizer_json_begin, sailvl_tok_tokenizer_json_end)},
      {"vocab.json", span(sailvl_tok_vocab_json_begin, sailvl_tok_vocab_json_end)},
      {"merges.txt", span(sailvl_tok_merges_txt_begin, sailvl_tok_merges_txt_end)},
      {"added_tokens.json", span(sailvl_tok_added_tokens_json_begin, sailvl_tok_added_tokens_json_end)},
      {"tokenizer_config.json", span(sailvl_tok_tokenizer_config_json_begin, sailvl_tok_tokenizer_config_json_end)},
  };
  return files;
}

std::string_view embedded_demo_photo() { return span(sailvl_tok_demo_photo_jpg_begin, sailvl_tok_demo_photo_jpg_end); }

}  // namespace sailvl::checkpoint
