// The model on CPU against the oracle's goldens (tools/reference/make_model_goldens.py; layout and
// tolerances in tests/data/README.md, "Model goldens"), for both tiny presets:
//   - vision features, pixel shuffle and projector output for images/chat/a_pixels.safetensors;
//   - for each chat case: prompt ids equal, input embeddings, the hidden state after every decoder
//     layer at the tap positions, the last-position logits at `logits_ids`, and the 32 greedy tokens
//     identical; chat() end to end gives the oracle's decoded text;
//   - seeded sampling reproducible end to end; the context budget and image-token checks fire
//     before any compute.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "image/image.h"
#include "loader/safetensors.h"
#include "model/sail_vl.h"
#include "ops/ops.h"
#include "runtime/chat.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "tests/testutil.h"

namespace sailvl {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Tolerances: tests/data/README.md, "Model goldens" (our CPU path is F32 like the oracle's; the
// differences are summation order only).
constexpr double kVisionAtol = 3e-5, kVisionRtol = 1e-5;        // vision features (and stages fed by them)
constexpr double kProjectorAtol = 5e-6, kProjectorRtol = 1e-5;  // mlp1 fed the golden pixel shuffle
constexpr double kHiddenAtol = 1e-5, kHiddenRtol = 1e-5;        // embeddings, each decoder layer
constexpr double kLogitsAtol = 3e-5, kLogitsRtol = 1e-5;        // last-position logits

const char* const kPresets[] = {"tiny-internvit", "tiny-aimv2"};
const char* const kCases[] = {"a_text", "b_one_image", "c_two_images", "d_second_turn"};

json read_json(const fs::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  return json::parse(f);
}

// One named tensor of a golden safetensors file, copied to an owned F32 tensor.
Tensor golden(const fs::path& file, const std::string& name) {
  auto st = loader::SafetensorsFile::open(file.string());
  const loader::TensorInfo* info = st->find(name);
  if (!info) throw std::runtime_error(file.string() + " has no tensor " + name);
  return st->tensor(*info).to(DType::F32);
}

// rows[k] = t[pos[k]]  for t [S, D].
Tensor rows_at(const Tensor& t, const std::vector<int64_t>& pos) {
  Tensor out = Tensor::empty({static_cast<int64_t>(pos.size()), t.size(1)}, DType::F32);
  for (size_t k = 0; k < pos.size(); ++k) out.select(0, static_cast<int64_t>(k)).copy_from(t.select(0, pos[k]));
  return out;
}

Tensor elems_at(const Tensor& v, const std::vector<int64_t>& ids) {
  Tensor out = Tensor::empty({static_cast<int64_t>(ids.size())}, DType::F32);
  const Tensor c = v.to(DType::F32).contiguous();
  for (size_t k = 0; k < ids.size(); ++k) out.data<float>()[k] = c.data<float>()[ids[k]];
  return out;
}

// The ids at which the golden stores the last-position logits: {0, stride, 2·stride, ...} ∪ the
// top-64 samplable ids, sorted (or an explicit "logits_ids" list).
std::vector<int64_t> golden_logit_ids(const json& meta, int64_t vocab) {
  if (meta.contains("logits_ids")) return meta["logits_ids"].get<std::vector<int64_t>>();
  std::set<int64_t> ids;
  const int64_t stride = meta["logits_stride"].get<int64_t>();
  for (int64_t i = 0; i < vocab; i += stride) ids.insert(i);
  for (int64_t i : meta["logits_top_ids"].get<std::vector<int64_t>>()) ids.insert(i);
  return {ids.begin(), ids.end()};
}

// tests/data/models/<preset>, or $SAILVL_MODEL_GOLDENS/<preset> to check goldens regenerated elsewhere
// (tools/reference/make_model_goldens.py --out DIR writes DIR/models/<preset>).
fs::path golden_dir(const std::string& preset) {
  if (const char* d = std::getenv("SAILVL_MODEL_GOLDENS")) return fs::path(d) / preset;
  return test::data_path("models/" + preset);
}

// The chat images of a case, preprocessed as the oracle does (card's load_image, max_num from the
// golden, then BF16) by image::preprocess_images. With `oracle_pixels`, images/chat/a.png is
// replaced by the oracle's own pixels of it (images/chat/a_pixels.safetensors), so the model is
// tested apart from the image loader (which has its own tests); b.png has no pixel golden.
image::PixelBatch case_pixels(const json& meta, bool oracle_pixels) {
  image::PreprocessOptions opt;
  opt.max_tiles = meta["max_num"].get<int64_t>();
  opt.dtype = DType::BF16;
  std::vector<Tensor> parts;
  image::PixelBatch out;
  for (const auto& p : meta["images"]) {
    const std::string rel = p.get<std::string>();
    if (oracle_pixels && rel == "images/chat/a.png") {
      parts.push_back(golden(test::data_path("images/chat/a_pixels.safetensors"), "pixels"));
    } else {
      parts.push_back(image::preprocess_images({test::data_path(rel).string()}, opt).pixels.to(DType::F32));
    }
    out.tiles_per_image.push_back(parts.back().size(0));
  }
  if (parts.empty()) return out;
  int64_t T = 0;
  for (const Tensor& t : parts) T += t.size(0);
  out.pixels = Tensor::empty({T, 3, parts[0].size(2), parts[0].size(3)}, DType::F32);
  for (int64_t at = 0; const Tensor& t : parts) {
    out.pixels.narrow(0, at, t.size(0)).copy_from(t);
    at += t.size(0);
  }
  return out;
}

std::vector<runtime::ChatTurn> case_history(const json& meta) {
  std::vector<runtime::ChatTurn> h;
  for (const auto& t : meta["history"]) h.push_back({t[0].get<std::string>(), t[1].get<std::string>()});
  return h;
}

class ModelCpu : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { ops::set_num_threads(2); }
};

TEST_P(ModelCpu, VisionStagesMatchOracle) {
  const std::string preset = GetParam();
  const model::SailVL& m = test::golden_sailvl(preset);
  const Tensor pixels = golden(test::data_path("images/chat/a_pixels.safetensors"), "pixels");  // BF16 values
  model::ImageStages st;
  m.encode_images(pixels, &st);
  const fs::path g = golden_dir(preset) / "vision_a.safetensors";
  EXPECT_CLOSE(st.features, golden(g, "features"), kVisionAtol, kVisionRtol) << "stage: vision tower";
  EXPECT_CLOSE(st.shuffled, golden(g, "pixel_shuffle"), kVisionAtol, kVisionRtol) << "stage: pixel shuffle";
  EXPECT_CLOSE(st.rows, golden(g, "projector"), kVisionAtol, kVisionRtol) << "stage: projector (mlp1)";
}

// The image path fed with the oracle's own pixel-shuffle input must reproduce its projector
// output: isolates mlp1 from the vision tower.
TEST_P(ModelCpu, ProjectorAloneMatchesOracle) {
  const std::string preset = GetParam();
  const model::SailVL& m = test::golden_sailvl(preset);
  const fs::path g = golden_dir(preset) / "vision_a.safetensors";
  Tensor shuffled;
  const Tensor rows = m.projector().forward(golden(g, "features"), &shuffled);
  EXPECT_CLOSE(shuffled, golden(g, "pixel_shuffle"), 0, 0) << "pixel shuffle is a permutation: exact";
  EXPECT_CLOSE(rows, golden(g, "projector"), kProjectorAtol, kProjectorRtol);
}

struct CaseParam {
  const char* preset;
  const char* name;
};

class ModelCase : public ::testing::TestWithParam<CaseParam> {
 protected:
  void SetUp() override { ops::set_num_threads(2); }
};

// Prompt ids, embeddings, every layer, logits and 32 greedy tokens of one chat case.
TEST_P(ModelCase, PrefillAndGreedyMatchOracle) {
  const CaseParam cp = GetParam();
  const model::SailVL& m = test::golden_sailvl(cp.preset);
  const fs::path dir = golden_dir(cp.preset);
  const json meta = read_json(dir / (std::string(cp.name) + ".json"));
  const fs::path gt = dir / (std::string(cp.name) + ".safetensors");

  // Prompt ids through the chat template, as chat() builds them.
  const image::PixelBatch px = case_pixels(meta, /*oracle_pixels=*/true);
  runtime::ChatRequest req;
  req.question = meta["question"].get<std::string>();
  req.history = case_history(meta);
  req.tiles = px.tiles_per_image;
  EXPECT_EQ(px.tiles_per_image, meta["tiles_per_image"].get<std::vector<int64_t>>());
  const runtime::ChatPrompt prompt = runtime::build_chat_prompt(m.tokenizer(), req);
  const std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  ASSERT_EQ(ids, meta["prompt_ids"].get<std::vector<int64_t>>()) << "stage: prompt ids";
  EXPECT_EQ(prompt.question, meta["stored_question"].get<std::string>());

  // Prefill with every layer's output.
  Tensor rows;
  if (px.pixels.defined()) rows = m.encode_images(px.pixels);
  const Tensor E = m.embed_prompt(ids, rows);
  const auto pos = meta["hidden_positions"].get<std::vector<int64_t>>();
  EXPECT_CLOSE(rows_at(E, pos), golden(gt, "embeds"), kHiddenAtol, kHiddenRtol) << "stage: input embeddings";

  const int64_t S = static_cast<int64_t>(ids.size());
  model::KvCache cache = m.llm().make_cache(S);
  model::LlmWorkspace ws = m.llm().make_workspace(S);
  Tensor logits = Tensor::empty({m.config().llm.vocab}, DType::F32);
  std::vector<Tensor> layers;
  m.llm().forward(E, cache, ws, logits, {.layer_outputs = &layers});
  ASSERT_EQ(static_cast<int64_t>(layers.size()), m.config().llm.layers);
  for (size_t l = 0; l < layers.size(); ++l)
    EXPECT_CLOSE(rows_at(layers[l], pos), golden(gt, "layer." + std::to_string(l)), kHiddenAtol, kHiddenRtol)
        << "stage: decoder layer " << l;
  const auto logit_ids = golden_logit_ids(meta, m.config().llm.vocab);
  EXPECT_CLOSE(elems_at(logits, logit_ids), golden(gt, "logits_last"), kLogitsAtol, kLogitsRtol)
      << "stage: last-position logits";

  // 32 greedy tokens through the generation loop (its own prefill), identical to HF generate().
  const auto want = meta["generated_ids"].get<std::vector<int64_t>>();
  const int64_t max_new = meta["generation"]["max_new_tokens"].get<int64_t>();
  runtime::GenerationOptions go;
  go.max_new_tokens = max_new;
  std::string streamed;
  go.on_token = [&](int64_t, const std::string& text) { streamed += text; };
  const runtime::GenerationResult r = runtime::generate(m, ids, px.pixels, go);
  EXPECT_EQ(streamed, r.text);
  // Every id must match up to the first step whose top-2 margin is within the logits tolerance
  // (a near-tie may legitimately flip there; tests/data/README.md); all 32 when no such step.
  const auto margins = meta["step_margins"].get<std::vector<double>>();
  size_t sure = want.size();
  for (size_t i = 0; i < margins.size() && i < want.size(); ++i)
    if (margins[i] <= 2 * (kLogitsAtol + kLogitsRtol)) {
      sure = i + 1;  // step i itself still has the oracle's argmax unless the margin is ~0
      break;
    }
  const std::vector<int64_t> got_prefix(r.tokens.begin(), r.tokens.begin() + std::min(sure, r.tokens.size()));
  EXPECT_EQ(got_prefix, std::vector<int64_t>(want.begin(), want.begin() + sure))
      << "stage: greedy decode (" << sure << " of " << want.size() << " steps have a safe margin)";
  if (sure == want.size()) {
    EXPECT_EQ(r.stop, static_cast<int64_t>(want.size()) < max_new || want.back() == 151645
                          ? runtime::StopReason::EndOfTurn
                          : runtime::StopReason::MaxTokens);
  }
}

// Teacher forcing: each step is fed the oracle's previous token, so every step whose oracle top-2
// margin is outside the logits tolerance is compared, also after an earlier near-tie.
TEST_P(ModelCase, TeacherForcedGreedyMatchesOracleAtEverySafeStep) {
  const CaseParam cp = GetParam();
  const model::SailVL& m = test::golden_sailvl(cp.preset);
  const json meta = read_json(golden_dir(cp.preset) / (std::string(cp.name) + ".json"));
  const image::PixelBatch px = case_pixels(meta, /*oracle_pixels=*/true);
  const auto ids = meta["prompt_ids"].get<std::vector<int64_t>>();
  const auto want = meta["generated_ids"].get<std::vector<int64_t>>();
  const auto margins = meta["step_margins"].get<std::vector<double>>();
  runtime::GenerationOptions go;
  go.max_new_tokens = static_cast<int64_t>(want.size());
  go.forced = &want;
  const runtime::GenerationResult r = runtime::generate(m, ids, px.pixels, go);
  ASSERT_EQ(r.tokens.size(), want.size());
  size_t compared = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (margins[i] <= 2 * (kLogitsAtol + kLogitsRtol)) continue;  // a near-tie may flip
    ++compared;
    EXPECT_EQ(r.tokens[i], want[i]) << "greedy step " << i << " (oracle top-2 gap " << margins[i] << ")";
  }
  EXPECT_GE(compared, want.size() - 2) << "the oracle has more near-ties than expected";
}

// chat() end to end: the response is the oracle's decoded text, cut and stripped; history grows.
TEST_P(ModelCase, ChatResponseMatchesOracle) {
  const CaseParam cp = GetParam();
  const model::SailVL& m = test::golden_sailvl(cp.preset);
  const json meta = read_json(golden_dir(cp.preset) / (std::string(cp.name) + ".json"));
  // End to end: the images go through image::preprocess_images too.
  const image::PixelBatch px = case_pixels(meta, /*oracle_pixels=*/false);
  runtime::GenerationOptions go;
  go.max_new_tokens = meta["generation"]["max_new_tokens"].get<int64_t>();
  const auto history = case_history(meta);
  const runtime::ChatResult r =
      runtime::chat(m, meta["question"].get<std::string>(), px.pixels.defined() ? &px : nullptr, history, go);
  EXPECT_EQ(r.prompt_ids, meta["prompt_ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(r.response, runtime::clean_response(meta["generated_text"].get<std::string>()));
  ASSERT_EQ(r.history.size(), history.size() + 1);
  EXPECT_EQ(r.history.back().question, meta["stored_question"].get<std::string>());
  EXPECT_EQ(r.history.back().answer, r.response);
}

std::vector<CaseParam> all_cases() {
  std::vector<CaseParam> v;
  for (const char* p : kPresets)
    for (const char* c : kCases) v.push_back({p, c});
  // A tied config with a stored lm_head: the stored tensor is the head (docs/MODEL.md, "The LM head").
  for (const char* c : {"a_text", "b_one_image"}) v.push_back({"tiny-internvit-stored-head", c});
  return v;
}

// The fixture really is the case it is meant to be: the config ties, a head is stored, its values
// differ from embed_tokens, and the loaded model uses it.
TEST(ModelLmHead, StoredHeadWinsOverTiedConfig) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit-stored-head");
  EXPECT_TRUE(m.config().llm.tie_word_embeddings);
  ASSERT_TRUE(m.weights().contains("language_model.lm_head.weight"));
  EXPECT_EQ(m.llm().head_source(), model::LmHeadSource::Stored);
  const Tensor head = m.weights().get("language_model.lm_head.weight");
  const Tensor emb = m.weights().get("language_model.model.embed_tokens.weight");
  EXPECT_NE(head.to_floats(), emb.to_floats());
  EXPECT_EQ(test::golden_sailvl("tiny-internvit").llm().head_source(), model::LmHeadSource::Tied);
  EXPECT_EQ(test::golden_sailvl("tiny-aimv2").llm().head_source(), model::LmHeadSource::Stored);
  EXPECT_EQ(model::lm_head_source(false, false), model::LmHeadSource::TiedAbsent);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelCpu, ::testing::ValuesIn(kPresets), [](const auto& info) {
  std::string s = info.param;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
});
INSTANTIATE_TEST_SUITE_P(Tiny, ModelCase, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string s = std::string(info.param.preset) + "_" + info.param.name;
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

// ---- generation behaviour (no golden needed: properties of our own loop) ----

std::vector<int64_t> text_prompt(const model::SailVL& m, const std::string& q) {
  runtime::ChatRequest req;
  req.question = q;
  const auto p = runtime::build_chat_prompt(m.tokenizer(), req);
  return {p.ids.begin(), p.ids.end()};
}

TEST(ModelGenerate, SeededSamplingIsReproducibleEndToEnd) {
  ops::set_num_threads(2);
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  const auto ids = text_prompt(m, "Tell me a story.");
  runtime::GenerationOptions go;
  go.max_new_tokens = 24;
  go.sampling.do_sample = true;
  go.sampling.temperature = 1.0f;
  go.sampling.top_k = 50;
  go.sampling.top_p = 0.9f;
  go.sampling.seed = 1234;
  const auto a = runtime::generate(m, ids, Tensor(), go);
  const auto b = runtime::generate(m, ids, Tensor(), go);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
  go.sampling.seed = 99;
  const auto c = runtime::generate(m, ids, Tensor(), go);
  EXPECT_NE(a.tokens, c.tokens) << "a different seed should change a 24-token sample of a random model";
  for (const auto* r : {&a, &c})
    for (int64_t t : r->tokens) {
      EXPECT_LT(t, m.tokenizer().size()) << "padding row sampled";
      EXPECT_NE(t, m.special().img_context) << "<IMG_CONTEXT> sampled";
    }
}

// -n is a cap: a prompt only has to fit the context (checked before any compute, with the numbers);
// an answer that fills the context stops there with StopReason::ContextFull.
TEST(ModelGenerate, ContextBudget) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  const auto ids = text_prompt(m, "Hi");
  const int64_t S = static_cast<int64_t>(ids.size());
  runtime::GenerationOptions go;
  go.max_new_tokens = 100;
  go.context_size = S - 1;
  try {
    runtime::generate(m, ids, Tensor(), go);
    FAIL() << "no ContextOverflow";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::ContextOverflow);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(S)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(S - 1)), std::string::npos) << msg;
  }
  go.context_size = S + 5;  // room for 5 fed tokens; the 6th is sampled from the last position
  const runtime::GenerationResult r = runtime::generate(m, ids, Tensor(), go);
  if (r.stop != runtime::StopReason::EndOfTurn) {
    EXPECT_EQ(r.stop, runtime::StopReason::ContextFull);
    EXPECT_EQ(r.tokens.size(), 6u);
  }
  go.max_new_tokens = 0;  // prefill only
  const runtime::GenerationResult z = runtime::generate(m, ids, Tensor(), go);
  EXPECT_TRUE(z.tokens.empty());
  EXPECT_EQ(z.stop, runtime::StopReason::MaxTokens);
}

TEST(ModelGenerate, ImageTokenCountMustMatchTiles) {
  const model::SailVL& m = test::golden_sailvl("tiny-internvit");
  auto ids = text_prompt(m, "Hi");
  ids.insert(ids.begin() + 3, 255, m.special().img_context);  // 255, not 256
  const Tensor pixels = Tensor::zeros({1, 3, 448, 448}, DType::F32);
  runtime::GenerationOptions go;
  go.max_new_tokens = 1;
  try {
    runtime::generate(m, ids, pixels, go);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("255"), std::string::npos) << e.what();
  }
}

TEST(ModelGenerate, CancellationStopsBeforeTheNextToken) {
  const model::SailVL& m = test::golden_sailvl("tiny-aimv2");
  const auto ids = text_prompt(m, "Count to ten.");
  std::atomic<bool> cancel{false};
  runtime::GenerationOptions go;
  go.max_new_tokens = 20;
  go.cancel = &cancel;
  int calls = 0;
  go.on_token = [&](int64_t id, const std::string&) {
    if (id >= 0 && ++calls == 3) cancel = true;
  };
  const auto r = runtime::generate(m, ids, Tensor(), go);
  if (r.stop != runtime::StopReason::EndOfTurn) {
    EXPECT_EQ(r.stop, runtime::StopReason::Cancelled);
    EXPECT_EQ(r.tokens.size(), 3u);
  }
}

TEST(ModelGenerate, IncrementalDecodeMatchesFullPrefill) {
  // Logits after prefill(S) + decode(1) equal the last-position logits of one prefill over S+1.
  ops::set_num_threads(2);
  const model::SailVL& m = test::golden_sailvl("tiny-aimv2");
  auto ids = text_prompt(m, "What is 2+2?");
  const int64_t S = static_cast<int64_t>(ids.size()), V = m.config().llm.vocab;
  std::vector<int64_t> ids1 = ids;
  ids1.push_back(17);
  Tensor la = Tensor::empty({V}, DType::F32), lb = Tensor::empty({V}, DType::F32);
  {
    auto cache = m.llm().make_cache(S + 1);
    auto ws = m.llm().make_workspace(S);
    m.llm().forward(m.embed_prompt(ids, Tensor()), cache, ws, la);
    m.llm().forward(m.embed_prompt(std::vector<int64_t>{17}, Tensor()), cache, ws, la);
  }
  {
    auto cache = m.llm().make_cache(S + 1);
    auto ws = m.llm().make_workspace(S + 1);
    m.llm().forward(m.embed_prompt(ids1, Tensor()), cache, ws, lb);
  }
  EXPECT_CLOSE(la, lb, 1e-4, 1e-4);
}

TEST(ModelLoad, LayerCountMismatchIsBadModel) {
  const fs::path src = test::tiny_model("tiny-internvit");
  const fs::path dir = test::temp_dir("model_layers");
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), dir / e.path().filename());
  std::string cfg = test::read_file(dir / "config.json");
  const std::string key = "\"num_hidden_layers\": 3";
  const size_t at = cfg.find(key);
  ASSERT_NE(at, std::string::npos) << cfg;
  cfg.replace(at, key.size(), "\"num_hidden_layers\": 2");
  test::write_file(dir / "config.json", cfg);
  try {
    model::SailVL::load(dir.string());
    FAIL() << "loaded a 3-layer checkpoint as 2 layers";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadModel);
    EXPECT_NE(std::string(e.what()).find("num_hidden_layers"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sailvl
