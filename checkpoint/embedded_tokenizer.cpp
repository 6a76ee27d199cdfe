// Embeds tests/data/sailvl-tokenizer/* with the GNU assembler's .incbin (no generated sources,
// no xxd step; works for both the CPU-only and the CUDA build since this is a plain host .cpp).
// Each file gets a begin and an end label; the bytes are read-only data of the binary.
#include "checkpoint/embedded_tokenizer.h"

#define SAILVL_TOKDIR SAILVL_SOURCE_DIR "/tests/data/sailvl-tokenizer/"

// One file: sailvl_tok_<sym>_begin .. sailvl_tok_<sym>_end in .rodata.
#define SAILVL_INCBIN(sym, file)                    \
  asm(".section .rodata\n"                          \
      ".balign 16\n"                                \
      ".global sailvl_tok_" #sym                    \
      "_begin\n"                                    \
      ".hidden sailvl_tok_" #sym                    \
      "_begin\n"                                    \
      "sailvl_tok_" #sym                            \
      "_begin:\n"                                   \
      ".incbin \"" SAILVL_TOKDIR file               \
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

SAILVL_INCBIN(tokenizer_json, "tokenizer.json");
SAILVL_INCBIN(vocab_json, "vocab.json");
SAILVL_INCBIN(merges_txt, "merges.txt");
SAILVL_INCBIN(added_tokens_json, "added_tokens.json");
SAILVL_INCBIN(tokenizer_config_json, "tokenizer_config.json");

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

}  // namespace sailvl::checkpoint
