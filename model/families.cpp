// The family tables (model/family.h) and what is the same for every family: the canonical tensor
// list, the layer-count check, the LM-head rule.
//
// Adding a family is one line in one of the two tables below (docs/CONTRIBUTING.md).
#include <set>

#include "model/aimv2.h"
#include "model/family.h"
#include "model/intern_vit.h"
#include "model/projector.h"
#include "model/qwen2.h"

namespace sailvl::model {

// ---- the tables ----

std::span<const VisionFamily> vision_families() {
  static const VisionFamily table[] = {
      internvit_family(),  // InternViT-300M: SAIL-VL-2B, -8B, -1d5-8B
      aimv2_family(),      // AIMv2-Huge: SAIL-VL-1d5-2B, -1d6-8B
  };
  return table;
}

std::span<const LlmFamily> llm_families() {
  static const LlmFamily table[] = {
      qwen2_family(),  // Qwen2 / Qwen2.5: every SAIL-VL release
  };
  return table;
}

namespace {

template <typename Family>
const Family& find(std::span<const Family> table, const std::string& model_type, const char* section,
                   const char* what) {
  std::string known;
  for (const Family& f : table) {
    if (model_type == f.model_type) return f;
    known += std::string(known.empty() ? "" : ", ") + "\"" + f.model_type + "\"";
  }
  fail(ErrorKind::BadModel, "config.json: ", section, ".model_type \"", escape_for_print(model_type),
       "\" is not a supported ", what, " (supported: ", known, ")");
}

}  // namespace

const VisionFamily& vision_family(const std::string& model_type) {
  return find(vision_families(), model_type, "vision_config", "vision tower");
}

const LlmFamily& llm_family(const std::string& model_type) {
  return find(llm_families(), model_type, "llm_config", "language model");
}

// ---- canonical tensors ----

std::vector<TensorSpec> checkpoint_tensors(const ModelConfig& c, std::optional<bool> stored_head) {
  std::vector<TensorSpec> out;
  vision_family(c).tensors(c.vision, out);
  llm_family(c).tensors(c.llm, stored_head.value_or(!c.llm.tie_word_embeddings), out);
  projector_tensors(c, out);
  return out;
}

// ---- the layer-count check ----

namespace {

// Distinct indices i of tensors named `prefix` + "<i>." + ...
std::set<int64_t> layer_indices(const loader::WeightMap& w, const std::string& prefix) {
  std::set<int64_t> out;
  for (const std::string& n : w.names()) {
    if (n.rfind(prefix, 0) != 0) continue;
    const size_t dot = n.find('.', prefix.size());
    const std::string idx = n.substr(prefix.size(), dot == std::string::npos ? std::string::npos : dot - prefix.size());
    int64_t v = 0;
    bool ok = !idx.empty() && idx.size() <= 6;
    for (char ch : idx) {
      ok = ok && ch >= '0' && ch <= '9';
      v = v * 10 + (ch - '0');
    }
    SAILVL_CHECK(ok, BadModel, w.dir(), ": tensor \"", escape_for_print(n), "\" has no layer index after \"", prefix,
                 "\"");
    out.insert(v);
  }
  return out;
}

void check_layers(const loader::WeightMap& w, const std::string& prefix, int64_t want, const char* key) {
  const std::set<int64_t> found = layer_indices(w, prefix);
  const int64_t n = static_cast<int64_t>(found.size());
  const bool dense = found.empty() || (*found.begin() == 0 && *found.rbegin() == n - 1);
  SAILVL_CHECK(n == want && dense, BadModel, w.dir(), ": config.json says ", key, " = ", want,
               " but the checkpoint has ", n, " layers under ", prefix, "*",
               found.empty() ? std::string() : str_cat(" (indices ", *found.begin(), "..", *found.rbegin(), ")"));
}

}  // namespace

void check_against_config(const loader::WeightMap& w, const ModelConfig& c) {
  check_layers(w, vision_family(c).layer_prefix, c.vision.layers, "vision_config.num_hidden_layers");
  check_layers(w, llm_family(c).layer_prefix, c.llm.layers, "llm_config.num_hidden_layers");
  const std::string emb = "language_model.model.embed_tokens.weight";
  const loader::TensorInfo& e = w.info(emb);
  SAILVL_CHECK(e.shape.size() == 2 && e.shape[0] == c.llm.vocab, BadModel, w.dir(), ": tensor \"", emb, "\" has shape ",
               shape_str(e.shape), " but llm_config.vocab_size is ", c.llm.vocab);
}

// ---- the LM head ----

LmHeadSource lm_head_source(bool head_stored, bool tie_word_embeddings) {
  if (head_stored) return LmHeadSource::Stored;
  return tie_word_embeddings ? LmHeadSource::Tied : LmHeadSource::TiedAbsent;
}

const char* lm_head_source_text(LmHeadSource s) {
  switch (s) {
    case LmHeadSource::Stored: return "stored language_model.lm_head.weight (used whatever tie_word_embeddings says)";
    case LmHeadSource::Tied: return "tied to embed_tokens (none stored; tie_word_embeddings true)";
    case LmHeadSource::TiedAbsent:
      return "embed_tokens (none stored although tie_word_embeddings is false: the only sensible weights)";
  }
  return "?";
}

// ---- LanguageModel helpers ----

void LanguageModel::forward(const Tensor& x, KvCache& cache, LlmWorkspace& ws, const Tensor& logits,
                            const ForwardOptions& opt) const {
  const SeqRows one{&cache, x.size(0)};
  forward(x, std::span<const SeqRows>(&one, 1), ws, logits, opt);
}

KvCache LanguageModel::make_cache(int64_t max_seq) const {
  const LlmConfig& c = config();
  return KvCache(c.layers, max_seq, c.kv_heads, c.head_dim, activation_dtype(device()), device());
}

}  // namespace sailvl::model
