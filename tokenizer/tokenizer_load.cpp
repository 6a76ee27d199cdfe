// Loading and validating tokenizer files (docs/VALIDATION.md, "Tokenizer and prompt").
//
// Two forms, same result:
//   tokenizer.json   Hugging Face tokenizers' serialisation: normalizer, pre_tokenizer, model (BPE
//                    vocab + merges as "a b" strings or ["a", "b"] pairs), added_tokens with flags;
//   vocab.json + merges.txt (+ added_tokens.json {content: id}, tokenizer_config.json's
//                    added_tokens_decoder {id: {content, special, lstrip, ...}}), the
//                    transformers "slow" file set. This form always uses NFC and the Qwen2 regex.
// Rules (each violation: ErrorKind::BadTokenizer naming the file and the entry):
//   vocab ids unique and exactly 0..N-1; every vocab token spelled in the byte-level alphabet; all
//   256 single-byte symbols present; every merge has two parts that are tokens and whose
//   concatenation is a token; no duplicate merge; added tokens have non-empty valid UTF-8 content,
//   unique ids and contents, an id < N only if that vocab entry spells the same text, and together
//   with the vocabulary cover 0..size-1 without holes; added_tokens.json and tokenizer_config.json
//   agree on every id they both name.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "loader/json_strict.h"
#include "tensor/error.h"
#include "tokenizer/tokenizer_internal.h"

namespace sailvl::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

// The Qwen2 pre-tokenizer pattern (docs/MODEL.md §10), used for the vocab.json + merges.txt form.
static const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

static constexpr int64_t kMaxTokenId = 1 << 24;  // far above any real vocabulary; keeps sizes sane
static constexpr uintmax_t kMaxFileBytes = 512ull << 20;

[[noreturn]] static void bad(const std::string& file, const std::string& msg) {
  fail(ErrorKind::BadTokenizer, file, ": ", msg);
}

static std::string read_text_file(const fs::path& p) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(p, ec);
  if (ec) bad(p.string(), "cannot read (" + ec.message() + ")");
  if (size > kMaxFileBytes) bad(p.string(), "file is larger than 512 MiB");
  std::ifstream f(p, std::ios::binary);
  if (!f) bad(p.string(), "cannot open");
  std::string s(static_cast<size_t>(size), '\0');
  f.read(s.data(), static_cast<std::streamsize>(size));
  if (static_cast<uintmax_t>(f.gcount()) != size) bad(p.string(), "short read");
  return s;
}

static json read_json(const fs::path& p) {
  return loader::parse_json_strict(read_text_file(p), p.string(), ErrorKind::BadTokenizer, 64);
}

static std::string q(std::string_view s) {  // a quoted, printable copy of untrusted text
  std::string r(1, '"');
  r += escape_for_print(s);
  r += '"';
  return r;
}

// ---------------------------------------------------------------- vocabulary and merges

// vocab: {byte-level token: id}. Fills t.bytes/kind/vocab/byte_id.
static void set_vocab(Tokenizer::Impl& t, const json& vocab, const std::string& file) {
  if (!vocab.is_object()) bad(file, "vocab is not a JSON object");
  const int64_t n = static_cast<int64_t>(vocab.size());
  if (n < 256 || n > kMaxTokenId)
    bad(file, "vocab has " + std::to_string(n) + " entries (need 256.." + std::to_string(kMaxTokenId) + ")");
  t.vocab_size = n;
  t.bytes.assign(static_cast<size_t>(n), std::string());
  t.kind.assign(static_cast<size_t>(n), 0);
  std::vector<const std::string*> owner(static_cast<size_t>(n), nullptr);
  t.vocab.reserve(static_cast<size_t>(n) * 2);
  std::string raw;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string& tok = it.key();
    if (!it.value().is_number_integer()) bad(file, "vocab entry " + q(tok) + " has a non-integer id");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= n)
      bad(file, "vocab entry " + q(tok) + " has id " + std::to_string(id) + ", outside 0.." + std::to_string(n - 1) +
                    " (ids must be unique and dense)");
    if (owner[id]) bad(file, "vocab id " + std::to_string(id) + " is used by both " + q(*owner[id]) + " and " + q(tok));
    owner[id] = &tok;
    if (tok.empty() || !byte_level_to_bytes(tok, raw))
      bad(file, "vocab entry " + q(tok) + " (id " + std::to_string(id) + ") is not spelled in the byte-level alphabet");
    t.bytes[id] = raw;
    t.vocab.emplace(raw, static_cast<TokenId>(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = t.vocab.find(std::string(1, static_cast<char>(b)));
    if (it == t.vocab.end())
      bad(file, "vocab lacks the single-byte symbol " + q(bytes_to_byte_level(std::string(1, static_cast<char>(b)))) +
                    " (byte " + std::to_string(b) + "); byte-level BPE needs all 256");
    t.byte_id[b] = it->second;
  }
}

// One merge "left right" (byte-level spellings). `where` names the entry for errors.
static void add_merge(Tokenizer::Impl& t, std::string_view left, std::string_view right, const std::string& file,
                      const std::string& where) {
  std::string a, b;
  if (left.empty() || right.empty()) bad(file, where + ": a merge needs two non-empty tokens");
  if (!byte_level_to_bytes(left, a)) bad(file, where + ": " + q(left) + " is not byte-level text");
  if (!byte_level_to_bytes(right, b)) bad(file, where + ": " + q(right) + " is not byte-level text");
  auto ia = t.vocab.find(a), ib = t.vocab.find(b), im = t.vocab.find(a + b);
  if (ia == t.vocab.end()) bad(file, where + ": " + q(left) + " is not in the vocabulary");
  if (ib == t.vocab.end()) bad(file, where + ": " + q(right) + " is not in the vocabulary");
  if (im == t.vocab.end())
    bad(file, where + ": the merged token " + q(std::string(left) + std::string(right)) + " is not in the vocabulary");
  const Merge m{static_cast<int32_t>(t.num_merges), im->second};
  if (!t.merges.insert(ia->second, ib->second, m))
    bad(file, where + ": duplicate merge " + q(std::string(left) + " " + std::string(right)));
  ++t.num_merges;
}

static void set_merges_json(Tokenizer::Impl& t, const json& merges, const std::string& file) {
  if (!merges.is_array()) bad(file, "model.merges is not a list");
  if (merges.size() > static_cast<size_t>(kMaxTokenId)) bad(file, "model.merges is too long");
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string where = "model.merges[" + std::to_string(i) + "]";
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        bad(file, where + ": " + q(s) + " is not two tokens separated by one space");
      add_merge(t, std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), file, where);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      add_merge(t, m[0].get_ref<const std::string&>(), m[1].get_ref<const std::string&>(), file, where);
    } else {
      bad(file, where + ": expected \"a b\" or [\"a\", \"b\"]");
    }
  }
}

static void set_merges_txt(Tokenizer::Impl& t, const std::string& text, const std::string& file) {
  if (auto bad_at = find_invalid_utf8(text)) bad(file, "invalid UTF-8 at byte " + std::to_string(*bad_at));
  std::istringstream in(text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;  // header comment
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(line_no);
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
      bad(file, where + ": " + q(line) + " is not two tokens separated by one space");
    add_merge(t, std::string_view(line).substr(0, sp), std::string_view(line).substr(sp + 1), file, where);
  }
}

// ---------------------------------------------------------------- added tokens

static bool get_bool(const json& o, const char* key, bool fallback, const std::string& file, const std::string& where) {
  if (!o.contains(key) || o[key].is_null()) return fallback;
  if (!o[key].is_boolean()) bad(file, where + ": \"" + key + "\" is not a boolean");
  return o[key].get<bool>();
}

static AddedToken parse_added_token(const json& o, int64_t id, const std::string& file, const std::string& where) {
  if (!o.is_object()) bad(file, where + ": not an object");
  if (!o.contains("content") || !o["content"].is_string()) bad(file, where + ": missing string \"content\"");
  AddedToken a;
  a.id = static_cast<TokenId>(id);
  a.content = o["content"].get<std::string>();
  a.special = get_bool(o, "special", false, file, where);
  a.lstrip = get_bool(o, "lstrip", false, file, where);
  a.rstrip = get_bool(o, "rstrip", false, file, where);
  a.single_word = get_bool(o, "single_word", false, file, where);
  a.normalized = get_bool(o, "normalized", !a.special, file, where);
  return a;
}

static int64_t parse_id(const json& v, const std::string& file, const std::string& where) {
  if (!v.is_number_integer()) bad(file, where + ": id is not an integer");
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= kMaxTokenId) bad(file, where + ": id " + std::to_string(id) + " is out of range");
  return id;
}

// Checks the added tokens against the vocabulary and each other, then lays out bytes/kind.
static void set_added(Tokenizer::Impl& t, std::vector<AddedToken> added, const std::string& file) {
  std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  int64_t size = t.vocab_size;
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& a = added[i];
    const std::string where = "added token " + q(a.content) + " (id " + std::to_string(a.id) + ")";
    if (a.content.empty()) bad(file, "added token id " + std::to_string(a.id) + " has empty content");
    if (auto off = find_invalid_utf8(a.content)) bad(file, where + ": invalid UTF-8 at byte " + std::to_string(*off));
    if (i > 0 && added[i - 1].id == a.id)
      bad(file, "id " + std::to_string(a.id) + " is given to two added tokens, " + q(added[i - 1].content) + " and " +
                    q(a.content));
    if (!t.added_by_content.emplace(a.content, a.id).second)
      bad(file, "added token " + q(a.content) + " appears twice (ids " + std::to_string(t.added_by_content[a.content]) +
                    " and " + std::to_string(a.id) + ")");
    if (a.id < t.vocab_size) {
      if (t.bytes[a.id] != a.content)
        bad(file, where + ": the vocabulary spells id " + std::to_string(a.id) + " as " +
                      q(bytes_to_byte_level(t.bytes[a.id])));
    } else if (auto it = t.vocab.find(a.content); it != t.vocab.end()) {
      bad(file, where + ": the same text is vocabulary id " + std::to_string(it->second));
    }
    size = std::max<int64_t>(size, a.id + 1);
  }
  t.bytes.resize(static_cast<size_t>(size));
  t.kind.resize(static_cast<size_t>(size), 255);  // 255 = hole until filled
  for (const AddedToken& a : added) {
    t.bytes[a.id] = a.content;
    t.kind[a.id] = a.special ? 2 : 1;
  }
  for (int64_t id = t.vocab_size; id < size; ++id)
    if (t.kind[id] == 255)
      bad(file, "no token has id " + std::to_string(id) + " (the vocabulary ends at " +
                    std::to_string(t.vocab_size - 1) + ", added tokens reach " + std::to_string(size - 1) + ")");
  t.added = std::move(added);
}

// ---------------------------------------------------------------- tokenizer.json

// Accepts the Qwen2 layout: Split(regex, Isolated) then ByteLevel(use_regex = false), possibly
// wrapped in a Sequence; returns the regex.
static std::string parse_pre_tokenizer(const json& pt, const std::string& file) {
  if (!pt.is_object()) bad(file, "pre_tokenizer: expected an object");
  std::vector<json> steps;
  if (pt.value("type", "") == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array())
    steps.assign(pt["pretokenizers"].begin(), pt["pretokenizers"].end());
  else
    steps.push_back(pt);
  std::string pattern;
  bool byte_level = false;
  for (const json& s : steps) {
    const std::string type = s.is_object() ? s.value("type", "") : "";
    if (type == "Split") {
      if (!pattern.empty()) bad(file, "pre_tokenizer: more than one Split step is not supported");
      if (!s.contains("pattern") || !s["pattern"].is_object()) bad(file, "pre_tokenizer.Split: missing pattern");
      const json& p = s["pattern"];
      if (p.contains("Regex") && p["Regex"].is_string())
        pattern = p["Regex"].get<std::string>();
      else
        bad(file, "pre_tokenizer.Split: only {\"Regex\": ...} patterns are supported");
      if (s.value("behavior", "") != "Isolated" || s.value("invert", false))
        bad(file, "pre_tokenizer.Split: only behavior \"Isolated\" without invert is supported");
    } else if (type == "ByteLevel") {
      if (s.value("use_regex", true) || s.value("add_prefix_space", false))
        bad(file, "pre_tokenizer.ByteLevel: only use_regex = false and add_prefix_space = false are supported");
      byte_level = true;
    } else {
      bad(file, "pre_tokenizer: unsupported step type " + q(type));
    }
  }
  if (pattern.empty() || !byte_level) bad(file, "pre_tokenizer: expected a Split regex followed by ByteLevel");
  return pattern;
}

static bool parse_normalizer(const json& n, const std::string& file) {
  if (n.is_null()) return false;
  if (n.is_object() && n.value("type", "") == "NFC") return true;
  if (n.is_object() && n.value("type", "") == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    if (n["normalizers"].empty()) return false;
    if (n["normalizers"].size() == 1) return parse_normalizer(n["normalizers"][0], file);
  }
  bad(file, "normalizer: only NFC (or none) is supported, got " + q(n.dump()));
}

static void load_tokenizer_json(Tokenizer::Impl& t, const fs::path& path) {
  const std::string file = path.string();
  const json j = read_json(path);
  if (!j.is_object()) bad(file, "not a JSON object");
  if (!j.contains("model") || !j["model"].is_object()) bad(file, "missing \"model\"");
  const json& m = j["model"];
  if (m.value("type", "BPE") != "BPE") bad(file, "model.type " + q(m.value("type", "")) + " is not BPE");
  if (m.contains("dropout") && !m["dropout"].is_null()) bad(file, "model.dropout is not supported");
  if (m.value("byte_fallback", false)) bad(file, "model.byte_fallback is not supported (byte-level BPE)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
      bad(file, std::string("model.") + k + " must be empty");
  t.ignore_merges = m.contains("ignore_merges") && m["ignore_merges"].is_boolean() && m["ignore_merges"].get<bool>();
  if (!m.contains("vocab")) bad(file, "missing model.vocab");
  if (!m.contains("merges")) bad(file, "missing model.merges");
  set_vocab(t, m["vocab"], file + ": model.vocab");
  set_merges_json(t, m["merges"], file);
  t.nfc = parse_normalizer(j.contains("normalizer") ? j["normalizer"] : json(), file);
  if (!j.contains("pre_tokenizer")) bad(file, "missing pre_tokenizer");
  t.splitter = std::make_unique<RegexSplitter>(parse_pre_tokenizer(j["pre_tokenizer"], file), file);
  if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", "") != "ByteLevel")
    bad(file, "decoder: only ByteLevel is supported");

  std::vector<AddedToken> added;
  if (j.contains("added_tokens")) {
    const json& a = j["added_tokens"];
    if (!a.is_array()) bad(file, "added_tokens is not a list");
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      if (!a[i].is_object() || !a[i].contains("id")) bad(file, where + ": missing \"id\"");
      added.push_back(parse_added_token(a[i], parse_id(a[i]["id"], file, where), file, where));
    }
  }
  set_added(t, std::move(added), file);
}

// ---------------------------------------------------------------- vocab.json + merges.txt

static std::vector<AddedToken> load_added_files(const fs::path& dir) {
  std::map<int64_t, AddedToken> by_id;
  const fs::path cfg = dir / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    const std::string file = cfg.string();
    const json c = read_json(cfg);
    if (!c.is_object()) bad(file, "not a JSON object");
    if (c.contains("added_tokens_decoder")) {
      const json& d = c["added_tokens_decoder"];
      if (!d.is_object()) bad(file, "added_tokens_decoder is not an object");
      for (auto it = d.begin(); it != d.end(); ++it) {
        const std::string where = "added_tokens_decoder[" + q(it.key()) + "]";
        int64_t id = -1;
        try {
          size_t used = 0;
          id = std::stoll(it.key(), &used);
          if (used != it.key().size()) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0 || id >= kMaxTokenId) bad(file, where + ": key is not a token id");
        by_id[id] = parse_added_token(it.value(), id, file, where);
      }
    }
  }
  const fs::path at = dir / "added_tokens.json";
  if (fs::exists(at)) {
    const std::string file = at.string();
    const json a = read_json(at);
    if (!a.is_object()) bad(file, "not a JSON object {content: id}");
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string where = "entry " + q(it.key());
      const int64_t id = parse_id(it.value(), file, where);
      auto found = by_id.find(id);
      if (found != by_id.end()) {
        if (found->second.content != it.key())
          bad(file, where + ": id " + std::to_string(id) + " is " + q(found->second.content) +
                        " in tokenizer_config.json's added_tokens_decoder");
        continue;
      }
      for (const auto& [other_id, tok] : by_id)
        if (tok.content == it.key())
          bad(file, where + ": has id " + std::to_string(id) + " but tokenizer_config.json gives it id " +
                        std::to_string(other_id));
      AddedToken tok;  // no flags known: transformers' defaults for a special token
      tok.id = static_cast<TokenId>(id);
      tok.content = it.key();
      by_id[id] = tok;
    }
  }
  std::vector<AddedToken> out;
  for (auto& [id, tok] : by_id) out.push_back(std::move(tok));
  return out;
}

static void load_vocab_merges(Tokenizer::Impl& t, const fs::path& dir) {
  const fs::path vocab = dir / "vocab.json", merges = dir / "merges.txt";
  set_vocab(t, read_json(vocab), vocab.string());
  set_merges_txt(t, read_text_file(merges), merges.string());
  t.nfc = true;
  t.splitter = std::make_unique<RegexSplitter>(kQwen2Pattern, vocab.string());
  set_added(t, load_added_files(dir), (dir / "added_tokens.json").string() + " / tokenizer_config.json");
}

std::unique_ptr<Tokenizer::Impl> load_tokenizer_impl(const std::string& dir_str, TokenizerFormat format) {
  const fs::path dir(dir_str);
  const bool has_json = fs::is_regular_file(dir / "tokenizer.json");
  const bool has_files = fs::is_regular_file(dir / "vocab.json") && fs::is_regular_file(dir / "merges.txt");
  if (format == TokenizerFormat::Auto) {
    if (has_json)
      format = TokenizerFormat::TokenizerJson;
    else if (has_files)
      format = TokenizerFormat::VocabMerges;
    else
      fail(ErrorKind::BadTokenizer, dir_str, ": no tokenizer.json and no vocab.json + merges.txt");
  }
  auto t = std::make_unique<Tokenizer::Impl>();
  if (format == TokenizerFormat::TokenizerJson) {
    if (!has_json) fail(ErrorKind::BadTokenizer, (dir / "tokenizer.json").string(), ": not found");
    t->source = (dir / "tokenizer.json").string();
    load_tokenizer_json(*t, dir / "tokenizer.json");
  } else {
    if (!has_files) fail(ErrorKind::BadTokenizer, dir_str, ": vocab.json and merges.txt are both needed");
    t->source = (dir / "vocab.json").string() + " + merges.txt";
    load_vocab_merges(*t, dir);
  }
  return t;
}

}  // namespace sailvl::tokenizer
