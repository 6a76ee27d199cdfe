// `sailvl tokenize`: text -> {"ids": [...]} with the model's tokenizer, or ids -> text with --decode.
//
//   sailvl tokenize -m DIR --text "Hello"            {"ids":[9707]}
//   echo 'Hi <|im_end|>' | sailvl tokenize -m DIR --parse-special
//   sailvl tokenize -m DIR --decode --text "[9707, 1879]"     (or "9707 1879", or {"ids": [...]});
//                                                           the text, then a newline
// User text is encoded with special-token parsing off unless --parse-special (docs/VALIDATION.md).
#include <iostream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/common.h"
#include "tensor/error.h"
#include "tokenizer/tokenizer.h"

namespace sailvl::cli {

static void setup_tokenize(Args& a) {
  a.usage_line = "sailvl tokenize -m DIR [--parse-special] [--text T | < file] [--decode [--skip-special]]";
  a.option("-m,--model", "DIR", "model or tokenizer directory (tokenizer.json or vocab.json + merges.txt)");
  a.option("--text", "TEXT", "input (default: read stdin)");
  a.flag("--parse-special", "match added/special tokens such as <|im_end|> in the text (HF behaviour)");
  a.flag("--replace-invalid", "replace invalid UTF-8 with U+FFFD instead of failing");
  a.flag("--decode", "input is token ids (JSON list or whitespace separated); print the text");
  a.flag("--skip-special", "with --decode: leave special tokens out");
  a.option("--tokenizer-format", "auto|json|files", "which files to load", "auto");
  a.examples = {"sailvl tokenize -m DIR --text 'Hello'                 # {\"ids\":[9707]}",
                "echo 'Hi <|im_end|>' | sailvl tokenize -m DIR --parse-special",
                "sailvl tokenize -m DIR --decode --text '[9707, 1879]'   # prints the text"};
}

static std::string read_input(const Args& a) {
  if (a.has("text")) return a.get("text");
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  return ss.str();
}

// "[1, 2]", {"ids": [1, 2]} or "1 2" -> ids.
static std::vector<tokenizer::TokenId> parse_ids(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  std::vector<tokenizer::TokenId> ids;
  if (first != std::string::npos && (s[first] == '[' || s[first] == '{')) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::Usage, "--decode: input is not valid JSON (", e.what(), ")");
    }
    if (j.is_object() && j.contains("ids")) j = j["ids"];
    SAILVL_CHECK(j.is_array(), Usage, "--decode: expected a JSON list of ids");
    for (const auto& v : j) {
      SAILVL_CHECK(v.is_number_integer(), Usage, "--decode: ", v.dump(), " is not an integer id");
      const int64_t id = v.get<int64_t>();
      SAILVL_CHECK(id >= 0 && id < (int64_t{1} << 31), Usage, "--decode: id ", id, " is out of range");
      ids.push_back(static_cast<tokenizer::TokenId>(id));
    }
    return ids;
  }
  std::istringstream in(s);
  std::string w;
  while (in >> w) {
    char* end = nullptr;
    const long long id = std::strtoll(w.c_str(), &end, 10);
    SAILVL_CHECK(end && *end == 0 && id >= 0 && id < (1ll << 31), Usage, "--decode: '", escape_for_print(w),
                 "' is not a token id");
    ids.push_back(static_cast<tokenizer::TokenId>(id));
  }
  return ids;
}

static int run_tokenize(Args& a) {
  const std::string form = a.get("tokenizer-format");
  tokenizer::TokenizerFormat format = tokenizer::TokenizerFormat::Auto;
  if (form == "json")
    format = tokenizer::TokenizerFormat::TokenizerJson;
  else if (form == "files")
    format = tokenizer::TokenizerFormat::VocabMerges;
  else
    SAILVL_CHECK(form == "auto", Usage, "--tokenizer-format must be auto, json or files, got '", form, "'");
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(resolve_model_dir(a.get("model")), format);
  const std::string input = read_input(a);

  if (a.on("decode")) {
    std::cout << tok.decode(parse_ids(input), a.on("skip-special")) << "\n";
    std::cout.flush();
    return 0;
  }
  tokenizer::EncodeOptions opt;
  opt.parse_special = a.on("parse-special");
  opt.replace_invalid = a.on("replace-invalid");
  const auto ids = tok.encode(input, opt);
  std::string out = "{\"ids\":[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]}\n";
  std::cout << out;
  std::cout.flush();
  return 0;
}

SAILVL_COMMAND(tokenize, "text -> token ids (JSON) with the model's tokenizer, or ids -> text (--decode)",
               setup_tokenize, run_tokenize);

}  // namespace sailvl::cli
