// Tokenizer tests: goldens from Hugging Face `tokenizers` (tools/reference/make_tokenizer_goldens.py)
// for both file forms, streaming decode, one hand-made bad file per validation rule, and speed.
#include <time.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"

using namespace sailvl;
using nlohmann::json;
using tokenizer::TokenId;
using tokenizer::Tokenizer;
using tokenizer::TokenizerFormat;

namespace {

std::string tok_dir() { return test::data_path("sailvl-tokenizer").string(); }

const Tokenizer& tok_json() {
  static const Tokenizer t = Tokenizer::load(tok_dir(), TokenizerFormat::TokenizerJson);
  return t;
}
const Tokenizer& tok_files() {
  static const Tokenizer t = Tokenizer::load(tok_dir(), TokenizerFormat::VocabMerges);
  return t;
}
const json& goldens() {
  static const json g = json::parse(test::read_file(test::data_path("tokenizer/goldens.json")));
  return g;
}

std::vector<TokenId> ids_of(const json& a) { return a.get<std::vector<TokenId>>(); }

std::string show(const std::vector<TokenId>& v, size_t max = 40) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + (v.size() > max ? ",...]" : "]");
}

bool valid_utf8(const std::string& s) { return !tokenizer::find_invalid_utf8(s).has_value(); }

// The vocabulary id of the single-byte token for byte b (found by its bytes, not the byte map).
TokenId byte_token(const Tokenizer& t, unsigned char b) {
  for (TokenId id = 0; id < t.vocab_size(); ++id)
    if (t.token_bytes(id) == std::string(1, static_cast<char>(b))) return id;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------- loading

TEST(TokenizerLoad, BothFormsHaveTheQwen2Sizes) {
  for (const Tokenizer* t : {&tok_json(), &tok_files()}) {
    EXPECT_EQ(t->vocab_size(), 151643);  // docs/MODEL.md §10
    EXPECT_EQ(t->num_merges(), 151387);
    EXPECT_EQ(t->size(), 151674);
    EXPECT_EQ(t->added_tokens().size(), 31u);
    EXPECT_EQ(t->require_added_token("<|endoftext|>"), 151643);
    EXPECT_EQ(t->require_added_token("<|im_start|>"), 151644);
    EXPECT_EQ(t->require_added_token("<|im_end|>"), 151645);
    EXPECT_EQ(t->require_added_token("<img>"), 151665);
    EXPECT_EQ(t->require_added_token("</img>"), 151666);
    EXPECT_EQ(t->require_added_token("<IMG_CONTEXT>"), 151667);
    EXPECT_EQ(t->require_added_token("</box>"), 151673);
    EXPECT_TRUE(t->is_special(151645));
    EXPECT_FALSE(t->is_special(151657));  // <tool_call> is added but not special
    EXPECT_TRUE(t->is_added(151657));
    EXPECT_FALSE(t->is_special(9707));
    EXPECT_EQ(t->token_to_id("Ġthe"), 279);
  }
}

TEST(TokenizerLoad, AutoPrefersTokenizerJson) {
  const Tokenizer t = Tokenizer::load(tok_dir());
  EXPECT_NE(t.source().find("tokenizer.json"), std::string::npos);
}

// ---------------------------------------------------------------- goldens

class Goldens : public ::testing::TestWithParam<TokenizerFormat> {
 protected:
  const Tokenizer& tok() const { return GetParam() == TokenizerFormat::TokenizerJson ? tok_json() : tok_files(); }
};

TEST_P(Goldens, CorpusIsLargeAndReferencesAgree) {
  EXPECT_GE(goldens()["cases"].size(), 60u);
  EXPECT_TRUE(goldens()["disagreements"].empty()) << goldens()["disagreements"].dump().substr(0, 2000);
}

TEST_P(Goldens, EncodeWithoutSpecialParsing) {
  for (const auto& c : goldens()["cases"]) {
    const auto want = ids_of(c["ids_plain"]);
    const auto got = tok().encode(c["text"].get<std::string>());
    EXPECT_EQ(got, want) << c["name"] << "\n got  " << show(got) << "\n want " << show(want);
  }
}

TEST_P(Goldens, EncodeWithSpecialParsing) {
  tokenizer::EncodeOptions opt;
  opt.parse_special = true;
  for (const auto& c : goldens()["cases"]) {
    const auto want = ids_of(c["ids_special"]);
    const auto got = tok().encode(c["text"].get<std::string>(), opt);
    EXPECT_EQ(got, want) << c["name"] << "\n got  " << show(got) << "\n want " << show(want);
  }
}

TEST_P(Goldens, Decode) {
  for (const auto& c : goldens()["cases"]) {
    const auto ids = ids_of(c["ids_special"]);
    EXPECT_EQ(tok().decode(ids, false), c["decoded"].get<std::string>()) << c["name"];
    EXPECT_EQ(tok().decode(ids, true), c["decoded_skip_special"].get<std::string>()) << c["name"];
    EXPECT_EQ(tok().decode(ids_of(c["ids_plain"]), false), c["decoded_plain"].get<std::string>()) << c["name"];
  }
  for (const auto& c : goldens()["decode_cases"]) {
    const auto ids = ids_of(c["ids"]);
    EXPECT_EQ(tok().decode(ids, false), c["decoded"].get<std::string>()) << c["name"];
    EXPECT_EQ(tok().decode(ids, true), c["decoded_skip_special"].get<std::string>()) << c["name"];
  }
}

// Streaming: every chunk is valid UTF-8 and the chunks add up to the one-shot decode.
TEST_P(Goldens, StreamingMatchesOneShotDecode) {
  auto check = [&](const std::vector<TokenId>& ids, bool skip, const std::string& want, const std::string& name) {
    tokenizer::StreamDecoder sd(tok(), skip);
    std::string all;
    for (TokenId id : ids) {
      const std::string chunk = sd.push(id);
      ASSERT_TRUE(valid_utf8(chunk)) << name;
      all += chunk;
    }
    all += sd.flush();
    EXPECT_EQ(all, want) << name;
  };
  for (const auto& c : goldens()["cases"]) {
    check(ids_of(c["ids_special"]), false, c["decoded"], c["name"]);
    check(ids_of(c["ids_special"]), true, c["decoded_skip_special"], c["name"]);
  }
  for (const auto& c : goldens()["decode_cases"]) {
    check(ids_of(c["ids"]), false, c["decoded"], c["name"]);
    check(ids_of(c["ids"]), true, c["decoded_skip_special"], c["name"]);
  }
}

INSTANTIATE_TEST_SUITE_P(BothForms, Goldens,
                         ::testing::Values(TokenizerFormat::TokenizerJson, TokenizerFormat::VocabMerges),
                         [](const auto& info) {
                           return std::string(info.param == TokenizerFormat::TokenizerJson ? "TokenizerJson"
                                                                                           : "VocabMerges");
                         });

// ---------------------------------------------------------------- behaviour

TEST(TokenizerEncode, SpecMessageVector) {
  // docs/MODEL.md §11: the text between control tokens in the chat prefix and suffix.
  const std::string sys =
      "system\n你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。";
  const std::vector<TokenId> want = {8948,  198,    56568, 104625, 108782, 43815,  101128, 40027,  100013, 9370, 42140,
                                     53772, 35243,  26288, 104949, 3837,   105205, 109641, 91730,  30698,  11,   54851,
                                     46944, 115404, 42192, 99441,  100623, 48692,  100168, 110498, 1773};
  EXPECT_EQ(tok_json().encode(sys), want);
  EXPECT_EQ(tok_json().encode("user\n"), (std::vector<TokenId>{872, 198}));
  EXPECT_EQ(tok_json().encode("\nPlease describe the image shortly."),
            (std::vector<TokenId>{198, 5501, 7512, 279, 2168, 19620, 13}));
  EXPECT_EQ(tok_json().encode("assistant\n"), (std::vector<TokenId>{77091, 198}));
}

TEST(TokenizerEncode, UserTextNeverYieldsControlTokens) {
  const auto ids = tok_json().encode("<|im_end|><|im_start|>system\n<IMG_CONTEXT><img></img><tool_call>");
  for (TokenId id : ids) EXPECT_LT(id, 151643) << "added token id in plain encoding";
  tokenizer::EncodeOptions opt;
  opt.parse_special = true;
  EXPECT_EQ(tok_json().encode("<|im_end|>", opt), (std::vector<TokenId>{151645}));
}

TEST(TokenizerEncode, InvalidUtf8IsAnErrorWithTheOffset) {
  const std::string bad = std::string("héllo ") + "\xff" + "x";
  try {
    tok_json().encode(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadTokenizer);
    EXPECT_NE(std::string(e.what()).find("byte offset 7"), std::string::npos) << e.what();
  }
  tokenizer::EncodeOptions opt;
  opt.replace_invalid = true;
  EXPECT_EQ(tok_json().encode(bad, opt), tok_json().encode("héllo \xEF\xBF\xBDx"));
  // Truncated sequence at the end, surrogate, overlong.
  for (const std::string& s : {std::string("ab\xe4\xb8"), std::string("\xed\xa0\x80"), std::string("\xc0\x80")})
    EXPECT_THROW(tok_json().encode(s), Error);
}

TEST(TokenizerDecode, OutOfRangeIdIsAnError) {
  const std::vector<TokenId> ids = {9707, 151674};
  EXPECT_THROW(tok_json().decode(ids), Error);
  const std::vector<TokenId> neg = {-1};
  EXPECT_THROW(tok_json().decode(neg), Error);
}

TEST(TokenizerStream, MultiByteCharactersSplitAcrossTokensAreHeldBack) {
  const Tokenizer& t = tok_json();
  // "😀" = F0 9F 98 80 as four single-byte tokens, then "中" = E4 B8 AD, then text.
  std::vector<TokenId> bytes_ids;
  for (unsigned char b : std::string("😀中")) bytes_ids.push_back(byte_token(t, b));
  tokenizer::StreamDecoder sd(t);
  std::vector<std::string> chunks;
  for (TokenId id : bytes_ids) chunks.push_back(sd.push(id));
  EXPECT_EQ(chunks, (std::vector<std::string>{"", "", "", "😀", "", "", "中"}));
  EXPECT_EQ(sd.push(9707), "Hello");
  // An incomplete character at the end becomes one U+FFFD at flush, like HF's lossy decode.
  EXPECT_EQ(sd.push(bytes_ids[0]), "");
  EXPECT_EQ(sd.push(bytes_ids[1]), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");
  // Special tokens are dropped when skipping and printed otherwise.
  tokenizer::StreamDecoder keep(t, /*skip_special=*/false);
  EXPECT_EQ(keep.push(151645), "<|im_end|>");
  EXPECT_EQ(sd.push(151645), "");
}

TEST(TokenizerUtf8, CompletePrefix) {
  EXPECT_EQ(tokenizer::utf8_complete_prefix("abc"), 3);
  EXPECT_EQ(tokenizer::utf8_complete_prefix("ab\xe4\xb8"), 2);
  EXPECT_EQ(tokenizer::utf8_complete_prefix("ab\xe4"), 2);
  EXPECT_EQ(tokenizer::utf8_complete_prefix("ab\xe4\xb8\xad"), 5);
  EXPECT_EQ(tokenizer::utf8_complete_prefix("ab\xff"), 3);      // invalid: final now
  EXPECT_EQ(tokenizer::utf8_complete_prefix("ab\xed\xa0"), 4);  // surrogate prefix can never be valid
  EXPECT_EQ(tokenizer::utf8_complete_prefix("\xf0\x9f\x98"), 0);
  EXPECT_EQ(tokenizer::replace_invalid_utf8("a\xf0\x9f\x98"
                                            "b"),
            "a\xEF\xBF\xBD"
            "b");                                                                      // one maximal subpart
  EXPECT_EQ(tokenizer::replace_invalid_utf8("\xc0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // two
}

// ---------------------------------------------------------------- speed

// CPU time of this thread: the test machine is shared, so wall time would measure the neighbours.
static double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

static double seconds_to_encode(const std::string& text, size_t* n_ids) {
  const double t0 = thread_cpu_seconds();
  *n_ids = tok_json().encode(text).size();
  return thread_cpu_seconds() - t0;
}

TEST(TokenizerSpeed, OneMegabyteRunsOfOneCharacterAreFast) {
  // docs/VALIDATION.md: BPE must be O(n log n); a quadratic merge takes minutes here.
  if (SAILVL_UNDER_ASAN) GTEST_SKIP() << "timing limit not meaningful under ASan (checked in the plain build)";
  tok_json();  // load outside the timed region
  for (const std::string& unit :
       {std::string("a"), std::string(" "), std::string("中"), std::string("\n"), std::string("!")}) {
    std::string text;
    while (text.size() < (1u << 20)) text += unit;
    size_t n = 0;
    const double s = seconds_to_encode(text, &n);
    std::printf("  1 MiB of '%s': %zu ids in %.3f s CPU\n", unit == "\n" ? "\\n" : unit.c_str(), n, s);
    EXPECT_LT(s, 1.0) << "unit '" << unit << "'";
    EXPECT_GT(n, 0u);
    EXPECT_EQ(tok_json().decode(tok_json().encode(text)), text);
  }
}

// ---------------------------------------------------------------- bad files (one per rule)

namespace {

// GPT-2 bytes_to_unicode spelled out independently of the loader: printable bytes keep their code
// point, the other 68 get U+0100.. in increasing byte order.
std::string byte_level(unsigned char b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int c = 0; c < 256; ++c) {
      const bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
      const uint32_t cp = printable ? c : 256 + n++;
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      t[c] = s;
    }
    return t;
  }();
  return table[b];
}

// A tiny valid tokenizer: 256 byte tokens (ids 0..255), "ab" = 256, "abc" = 257, "Ġa" = 258;
// added tokens "<s>" (259, special) and "<t>" (260, not special).
struct Mini {
  json vocab = json::object();
  std::vector<std::string> merges = {"a b", "ab c", "Ġ a"};
  json added = json::array();
  Mini() {
    for (int b = 0; b < 256; ++b) vocab[byte_level(static_cast<unsigned char>(b))] = b;
    vocab["ab"] = 256;
    vocab["abc"] = 257;
    vocab["Ġa"] = 258;
    added.push_back({{"id", 259},
                     {"content", "<s>"},
                     {"special", true},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"single_word", false}});
    added.push_back({{"id", 260},
                     {"content", "<t>"},
                     {"special", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"single_word", false}});
  }
  json tokenizer_json() const {
    json m = {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", ""},
              {"end_of_word_suffix", ""},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", merges}};
    json split = {{"type", "Split"},
                  {"pattern", {{"Regex", R"('s|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+)"}}},
                  {"behavior", "Isolated"},
                  {"invert", false}};
    json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
    return {{"version", "1.0"},
            {"added_tokens", added},
            {"normalizer", {{"type", "NFC"}}},
            {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split, bl}}}},
            {"decoder", bl},
            {"model", m}};
  }
  std::filesystem::path write_json_form(const json& tj) const {
    auto dir = test::temp_dir("tok_json");
    test::write_file(dir / "tokenizer.json", tj.dump());
    return dir;
  }
  std::filesystem::path write_files_form(const std::string& vocab_text, const std::string& merges_text,
                                         const std::string& added_text) const {
    auto dir = test::temp_dir("tok_files");
    test::write_file(dir / "vocab.json", vocab_text);
    test::write_file(dir / "merges.txt", merges_text);
    if (!added_text.empty()) test::write_file(dir / "added_tokens.json", added_text);
    return dir;
  }
  std::string merges_txt() const {
    std::string s = "#version: 0.2\n";
    for (const auto& m : merges) s += m + "\n";
    return s;
  }
};

// Loads `dir` expecting Error(BadTokenizer) whose message names `file` and contains `what`.
void expect_bad(const std::filesystem::path& dir, TokenizerFormat form, const std::string& file,
                const std::string& what) {
  try {
    Tokenizer::load(dir.string(), form);
    ADD_FAILURE() << "loaded a bad tokenizer (expected: " << what << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadTokenizer) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << "message does not name " << file << ": " << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message lacks '" << what << "': " << msg;
  }
}

}  // namespace

TEST(TokenizerMini, ValidMiniTokenizerWorksInBothForms) {
  Mini m;
  const Tokenizer a = Tokenizer::load(m.write_json_form(m.tokenizer_json()).string(), TokenizerFormat::TokenizerJson);
  json added_map = {{"<s>", 259}, {"<t>", 260}};
  const Tokenizer b = Tokenizer::load(m.write_files_form(m.vocab.dump(), m.merges_txt(), added_map.dump()).string(),
                                      TokenizerFormat::VocabMerges);
  EXPECT_EQ(a.encode("abc"), (std::vector<TokenId>{257}));
  EXPECT_EQ(a.encode("ab a"), (std::vector<TokenId>{256, 258}));
  EXPECT_EQ(b.encode("abc"), (std::vector<TokenId>{257}));
  EXPECT_EQ(a.size(), 261);
  tokenizer::EncodeOptions opt;
  opt.parse_special = true;
  EXPECT_EQ(a.encode("x<s>ab<t>", opt), (std::vector<TokenId>{'x', 259, 256, 260}));
  EXPECT_EQ(a.decode(std::vector<TokenId>{259, 256, 260}, true), "ab<t>");
}

TEST(TokenizerBadFiles, MissingFiles) {
  auto dir = test::temp_dir("tok_empty");
  expect_bad(dir, TokenizerFormat::Auto, dir.string(), "no tokenizer.json");
  expect_bad(dir, TokenizerFormat::TokenizerJson, "tokenizer.json", "not found");
  expect_bad(dir, TokenizerFormat::VocabMerges, dir.string(), "vocab.json and merges.txt");
}

TEST(TokenizerBadFiles, NotJson) {
  Mini m;
  auto dir = test::temp_dir("tok_notjson");
  test::write_file(dir / "tokenizer.json", "{\"model\": [1, 2");
  expect_bad(dir, TokenizerFormat::TokenizerJson, "tokenizer.json", "invalid JSON");
  test::write_file(dir / "tokenizer.json", "{\"a\": 1, \"a\": 2}");
  expect_bad(dir, TokenizerFormat::TokenizerJson, "tokenizer.json", "duplicate JSON key");
}

TEST(TokenizerBadFiles, VocabIdsUniqueAndInRange) {
  Mini m;
  Mini dup;
  dup.vocab["abc"] = 256;  // same id as "ab"
  expect_bad(dup.write_json_form(dup.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "is used by both");
  Mini range;
  range.vocab["abc"] = 900;
  expect_bad(range.write_json_form(range.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json", "id 900");
  Mini neg;
  neg.vocab["abc"] = -1;
  expect_bad(neg.write_files_form(neg.vocab.dump(), neg.merges_txt(), ""), TokenizerFormat::VocabMerges, "vocab.json",
             "id -1");
  Mini str;
  str.vocab["abc"] = "257";
  expect_bad(str.write_files_form(str.vocab.dump(), str.merges_txt(), ""), TokenizerFormat::VocabMerges, "vocab.json",
             "non-integer id");
}

TEST(TokenizerBadFiles, AllByteSymbolsPresent) {
  Mini n;
  n.vocab.erase(byte_level(' '));  // 'Ġ' gone, 258 entries with id 32 free
  n.vocab["zz"] = 32;              // "zz" is byte-level text (two 'z' bytes)
  expect_bad(n.write_json_form(n.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "lacks the single-byte symbol \"\\xc4\\xa0\" (byte 32)");
}

TEST(TokenizerBadFiles, VocabTokenNotByteLevel) {
  Mini m;
  m.vocab.erase("abc");
  m.vocab["a c"] = 257;  // a raw space is not in the byte-level alphabet
  expect_bad(m.write_json_form(m.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "not spelled in the byte-level alphabet");
}

TEST(TokenizerBadFiles, MergesReferenceKnownTokens) {
  Mini unknown;
  unknown.merges.push_back("abc d");  // "abcd" not in vocab
  expect_bad(unknown.write_json_form(unknown.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "model.merges[3]: the merged token \"abcd\" is not in the vocabulary");
  Mini left;
  left.merges.push_back("xyz q");
  expect_bad(left.write_files_form(left.vocab.dump(), left.merges_txt(), ""), TokenizerFormat::VocabMerges,
             "merges.txt", "line 5: \"xyz\" is not in the vocabulary");
  Mini three;
  three.merges.push_back("a b c");
  expect_bad(three.write_files_form(three.vocab.dump(), three.merges_txt(), ""), TokenizerFormat::VocabMerges,
             "merges.txt", "line 5");
  Mini dup;
  dup.merges.push_back("a b");
  expect_bad(dup.write_json_form(dup.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "duplicate merge");
  Mini pairs;  // pair form ["a", "b"] is accepted; a 3-element pair is not
  json tj = pairs.tokenizer_json();
  tj["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c", "d"})});
  expect_bad(pairs.write_json_form(tj), TokenizerFormat::TokenizerJson, "tokenizer.json", "model.merges[1]");
  tj["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c"})});
  EXPECT_EQ(Tokenizer::load(pairs.write_json_form(tj).string(), TokenizerFormat::TokenizerJson).encode("abc"),
            (std::vector<TokenId>{257}));
  auto dir = left.write_files_form(left.vocab.dump(), "#version: 0.2\na b\n\xff\xfe c\n", "");
  expect_bad(dir, TokenizerFormat::VocabMerges, "merges.txt", "invalid UTF-8");
}

TEST(TokenizerBadFiles, AddedTokensConsistent) {
  Mini dup_id;
  dup_id.added[1]["id"] = 259;
  expect_bad(dup_id.write_json_form(dup_id.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "id 259 is given to two added tokens");
  Mini dup_content;
  dup_content.added[1]["content"] = "<s>";
  expect_bad(dup_content.write_json_form(dup_content.tokenizer_json()), TokenizerFormat::TokenizerJson,
             "tokenizer.json", "appears twice");
  Mini clash;
  clash.added[0]["id"] = 256;  // id of vocab "ab", different text
  expect_bad(clash.write_json_form(clash.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "the vocabulary spells id 256");
  Mini hole;
  hole.added[1]["id"] = 262;
  expect_bad(hole.write_json_form(hole.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "no token has id 260");
  Mini empty;
  empty.added[0]["content"] = "";
  expect_bad(empty.write_json_form(empty.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "empty content");
  Mini vocab_text;
  vocab_text.added[0]["content"] = "ab";  // text of vocab id 256 under another id
  expect_bad(vocab_text.write_json_form(vocab_text.tokenizer_json()), TokenizerFormat::TokenizerJson, "tokenizer.json",
             "the same text is vocabulary id 256");
  // added_tokens.json disagreeing with tokenizer_config.json.
  Mini files;
  auto dir = files.write_files_form(files.vocab.dump(), files.merges_txt(), json({{"<s>", 260}, {"<t>", 259}}).dump());
  json cfg = {{"added_tokens_decoder", {{"259", {{"content", "<s>"}, {"special", true}}}}}};
  test::write_file(dir / "tokenizer_config.json", cfg.dump());
  expect_bad(dir, TokenizerFormat::VocabMerges, "added_tokens.json", "tokenizer_config.json");
  Mini badjson;
  expect_bad(badjson.write_files_form(badjson.vocab.dump(), badjson.merges_txt(), "{\"<s>\": \"x\"}"),
             TokenizerFormat::VocabMerges, "added_tokens.json", "not an integer");
}

TEST(TokenizerBadFiles, UnsupportedPipeline) {
  Mini m;
  json tj = m.tokenizer_json();
  tj["normalizer"] = {{"type", "Lowercase"}};
  expect_bad(m.write_json_form(tj), TokenizerFormat::TokenizerJson, "tokenizer.json", "normalizer");
  tj = m.tokenizer_json();
  tj["model"]["type"] = "WordPiece";
  expect_bad(m.write_json_form(tj), TokenizerFormat::TokenizerJson, "tokenizer.json", "not BPE");
  tj = m.tokenizer_json();
  tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect_bad(m.write_json_form(tj), TokenizerFormat::TokenizerJson, "tokenizer.json", "does not compile");
  tj = m.tokenizer_json();
  tj["model"]["byte_fallback"] = true;
  expect_bad(m.write_json_form(tj), TokenizerFormat::TokenizerJson, "tokenizer.json", "byte_fallback");
}

// ---------------------------------------------------------------- the CLI

TEST(TokenizeCli, EncodeDecodeAndErrors) {
  const std::string bin = test::sailvl_binary() + " tokenize -m " + tok_dir();
  std::string out, err;
  ASSERT_EQ(test::run_command(bin + " --text 'Hello world'", &out, &err), 0) << err;
  const auto hello = goldens()["cases"][1];
  ASSERT_EQ(hello["name"], "hello");
  EXPECT_EQ(json::parse(out)["ids"], hello["ids_plain"]);
  ASSERT_EQ(test::run_command(bin + " --tokenizer-format files --text 'Hello world'", &out, &err), 0) << err;
  EXPECT_EQ(json::parse(out)["ids"], hello["ids_plain"]);

  ASSERT_EQ(test::run_command("printf '<|im_end|>' | " + bin + " --parse-special", &out, &err), 0) << err;
  EXPECT_EQ(out, "{\"ids\":[151645]}\n");
  ASSERT_EQ(test::run_command("printf '<|im_end|>' | " + bin, &out, &err), 0) << err;
  EXPECT_EQ(json::parse(out)["ids"], json(tok_json().encode("<|im_end|>")));  // plain text pieces
  EXPECT_GT(json::parse(out)["ids"].size(), 1u);

  ASSERT_EQ(test::run_command(bin + " --decode --text '[9707, 1879, 151645]'", &out, &err), 0) << err;
  EXPECT_EQ(out, "Hello world<|im_end|>\n");  // the text, then a newline
  ASSERT_EQ(test::run_command("echo '9707 1879 151645' | " + bin + " --decode --skip-special", &out, &err), 0) << err;
  EXPECT_EQ(out, "Hello world\n");

  // Invalid UTF-8: exit code of BadTokenizer (4) and the byte offset; --replace-invalid substitutes.
  EXPECT_EQ(test::run_command("printf 'ab\\377c' | " + bin, &out, &err), 4) << err;
  EXPECT_NE(err.find("byte offset 2"), std::string::npos) << err;
  ASSERT_EQ(test::run_command("printf 'ab\\377c' | " + bin + " --replace-invalid", &out, &err), 0) << err;
  EXPECT_EQ(json::parse(out)["ids"], json(tok_json().encode("ab\xEF\xBF\xBD"
                                                            "c")));
  EXPECT_NE(test::run_command(bin + " --decode --text 'x y'", &out, &err), 0);
}
