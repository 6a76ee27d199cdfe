// A token sequence in a KV cache: see sequence.h.
#include "runtime/sequence.h"

#include <algorithm>

#include "model/model.h"
#include "runtime/memory_plan.h"
#include "tensor/stage.h"

namespace sailvl::runtime {

namespace {
// The cache starts with room for this many rows and doubles (up to the context) as it fills.
constexpr int64_t kInitialRows = 1024;
}  // namespace

Sequence::Sequence(const model::SailVL& m, int64_t context, int64_t chunk, std::shared_ptr<model::LlmWorkspace> ws)
    : m_(&m), ws_(std::move(ws)) {
  const model::LlmConfig& lc = m.config().llm;
  context_ = context > 0 ? context : lc.max_position_embeddings;
  chunk_ = chunk > 0 ? chunk : prefill_chunk_tokens(m.device());
  cache_ = m.llm().make_cache(std::min(context_, kInitialRows));
  if (!ws_) ws_ = std::make_shared<model::LlmWorkspace>(m.llm().make_workspace(std::min(chunk_, context_)));
  step_id_ = Tensor::empty({1}, DType::I64);
  step_emb_ = Tensor::empty({1, lc.hidden}, model::activation_dtype(m.device()), m.device());
}

int64_t Sequence::common_prefix(std::span<const int64_t> ids, std::span<const uint64_t> tags) const {
  const int64_t img = m_->special().img_context;
  const size_t n = std::min(ids.size(), ids_.size());
  size_t i = 0, k = 0;  // k: placeholders passed
  for (; i < n && ids[i] == ids_[i]; ++i) {
    if (ids[i] != img) continue;
    const uint64_t want = k < tags.size() ? tags[k] : 0;
    if (k >= tags_.size() || tags_[k] != want) break;  // the same placeholder, another picture
    ++k;
  }
  return static_cast<int64_t>(i);
}

void Sequence::truncate(int64_t n) {
  n = std::clamp<int64_t>(n, 0, length());
  const int64_t img = m_->special().img_context;
  ids_.resize(static_cast<size_t>(n));
  tags_.resize(static_cast<size_t>(std::count(ids_.begin(), ids_.end(), img)));
  cache_.set_length(n);
}

void Sequence::ensure_capacity(int64_t rows) {
  if (rows <= cache_.capacity()) return;
  int64_t cap = cache_.capacity();
  while (cap < rows) cap *= 2;
  cache_.reserve(std::min(cap, context_));
}

PrefillStats Sequence::prefill(std::span<const int64_t> ids, std::span<const uint64_t> tags,
                               const std::function<ImageRows(int64_t)>& rows_from, const Tensor& logits,
                               const model::RunControl& ctl, std::vector<Tensor>* layer_outputs) {
  const int64_t S = static_cast<int64_t>(ids.size());
  SAILVL_CHECK(S >= 1, Usage, "empty prompt");
  SAILVL_CHECK(S <= context_, ContextOverflow, "the prompt needs ", S, " tokens but the context holds ", context_,
               " (-c); start a new conversation (/reset) or use fewer image tiles (--max-tiles)");
  PrefillStats st;
  // Keep the common prefix, but always recompute the last token: its logits are the answer's first.
  const int64_t keep = std::min(common_prefix(ids, tags), S - 1);
  truncate(keep);
  st.reused = keep;
  st.prefilled = S - keep;
  ensure_capacity(S);

  // Image rows for the placeholders from the first one not yet in the cache.
  const int64_t img_ctx = m_->special().img_context;
  const int64_t k0 = std::count(ids.begin(), ids.begin() + keep, img_ctx);
  const bool need_rows = std::find(ids.begin() + keep, ids.end(), img_ctx) != ids.end();
  const ImageRows rows = need_rows ? rows_from(k0) : ImageRows{};

  const int64_t D = m_->config().llm.hidden;
  const DType act = model::activation_dtype(m_->device());
  const int64_t chunk = layer_outputs ? std::max<int64_t>(st.prefilled, 1) : chunk_;
  if (ws_->max_tokens < std::min(chunk, st.prefilled)) *ws_ = m_->llm().make_workspace(std::min(chunk, st.prefilled));
  StageScope stage("prefill");
  for (int64_t p = keep; p < S; p += chunk) {
    ctl.check();
    const int64_t n = std::min(chunk, S - p);
    const bool last = p + n == S;
    Tensor E = Tensor::empty({n, D}, act, m_->device());
    m_->embed_slice(E, ids, p, rows.rows, rows.first);  // E = embed(ids[p, p+n)), image rows in  [n, D]
    model::RunControl layer_ctl;  // cancellation between layers (progress is reported in tokens, below)
    layer_ctl.cancel = ctl.cancel;
    model::ForwardOptions fo;
    fo.logits = last && logits.defined();  // no logits wanted: a partial prefill (the server's chunks)
    fo.layer_outputs = layer_outputs;
    fo.control = &layer_ctl;
    m_->llm().forward(E, cache_, *ws_, fo.logits ? logits : Tensor(), fo);
    for (int64_t i = p; i < p + n; ++i) {  // these rows are now valid
      ids_.push_back(ids[static_cast<size_t>(i)]);
      if (ids[static_cast<size_t>(i)] == img_ctx) {
        const size_t k = tags_.size();
        tags_.push_back(k < tags.size() ? tags[k] : 0);
      }
    }
    ++st.chunks;
    ctl.report(p + n - keep, S - keep);
  }
  model::finish_stage(m_->device());
  return st;
}

void Sequence::step(int64_t token, const Tensor& logits) {
  SAILVL_CHECK(length() < context_, ContextOverflow, "the context is full (", context_, " tokens)");
  ensure_capacity(length() + 1);
  step_id_.data<int64_t>()[0] = token;
  m_->llm().embed(step_emb_, step_id_);                // e = embed_tokens[token]     [1, D]
  m_->llm().forward(step_emb_, cache_, *ws_, logits);  // logits of the next position [V]
  ids_.push_back(token);
}

void Sequence::step_batch(std::span<Sequence* const> seqs, std::span<const int64_t> tokens, model::LlmWorkspace& ws,
                          const Tensor& logits) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  SAILVL_CHECK(B >= 1 && static_cast<int64_t>(tokens.size()) == B && ws.max_tokens >= B, Internal, "step_batch: ", B,
               " sequences, ", tokens.size(), " tokens, workspace of ", ws.max_tokens);
  const model::SailVL& m = *seqs[0]->m_;
  std::vector<model::SeqRows> rows(static_cast<size_t>(B));
  Tensor ids = Tensor::empty({B}, DType::I64);
  for (int64_t b = 0; b < B; ++b) {
    Sequence& s = *seqs[static_cast<size_t>(b)];
    SAILVL_CHECK(s.length() < s.context_, ContextOverflow, "the context is full (", s.context_, " tokens)");
    s.ensure_capacity(s.length() + 1);
    ids.data<int64_t>()[b] = tokens[static_cast<size_t>(b)];
    rows[static_cast<size_t>(b)] = {&s.cache_, 1};
  }
  Tensor emb = Tensor::empty({B, m.config().llm.hidden}, model::activation_dtype(m.device()), m.device());
  m.llm().embed(emb, ids);                 // e[b] = embed_tokens[tokens[b]]     [B, D]
  m.llm().forward(emb, rows, ws, logits);  // logits[b] of sequence b's next position  [B, V]
  for (int64_t b = 0; b < B; ++b) seqs[static_cast<size_t>(b)]->ids_.push_back(tokens[static_cast<size_t>(b)]);
}

}  // namespace sailvl::runtime
