// Qwen2 decoder forward: see qwen2.h for the math and its source.
#include "model/qwen2.h"

#include <string>

#include "model/linear_weight.h"
#include "model/model.h"
#include "ops/ops.h"
#include "tensor/log.h"
#include "tensor/stage.h"

namespace sailvl::model {

Qwen2 Qwen2::load(const loader::WeightMap& weights, const LlmConfig& cfg, const Device& device) {
  SAILVL_CHECK(cfg.hidden_act == "silu", BadModel, "config.json: llm_config.hidden_act \"", cfg.hidden_act,
               "\" is not supported (Qwen2 uses silu)");
  SAILVL_CHECK(cfg.heads % cfg.kv_heads == 0, BadModel, "config.json: num_attention_heads ", cfg.heads,
               " is not a multiple of num_key_value_heads ", cfg.kv_heads);
  Qwen2 m;
  m.cfg_ = cfg;
  m.device_ = device;
  const int64_t D = cfg.hidden, F = cfg.intermediate, H = cfg.heads, Hkv = cfg.kv_heads, Dh = cfg.head_dim;
  const int64_t V = cfg.vocab;

  auto M = weights.scope("language_model.model");
  m.embed_tokens = place(M.require("embed_tokens.weight", {V, D}), device);
  for (int64_t i = 0; i < cfg.layers; ++i) {
    auto W = M.scope("layers." + std::to_string(i));
    Qwen2Layer L;
    L.input_layernorm = place_as_activation(W.require("input_layernorm.weight", {D}), device);
    L.wq = linear_weight(W, "self_attn.q_proj.weight", H * Dh, D, cfg.quant, device);
    L.bq = place_as_activation(W.require("self_attn.q_proj.bias", {H * Dh}), device);
    L.wk = linear_weight(W, "self_attn.k_proj.weight", Hkv * Dh, D, cfg.quant, device);
    L.bk = place_as_activation(W.require("self_attn.k_proj.bias", {Hkv * Dh}), device);
    L.wv = linear_weight(W, "self_attn.v_proj.weight", Hkv * Dh, D, cfg.quant, device);
    L.bv = place_as_activation(W.require("self_attn.v_proj.bias", {Hkv * Dh}), device);
    L.wo = linear_weight(W, "self_attn.o_proj.weight", D, H * Dh, cfg.quant, device);
    L.post_attention_layernorm = place_as_activation(W.require("post_attention_layernorm.weight", {D}), device);
    L.w_gate = linear_weight(W, "mlp.gate_proj.weight", F, D, cfg.quant, device);
    L.w_up = linear_weight(W, "mlp.up_proj.weight", F, D, cfg.quant, device);
    L.w_down = linear_weight(W, "mlp.down_proj.weight", D, F, cfg.quant, device);
    m.layers_.push_back(std::move(L));
  }
  m.norm = place_as_activation(M.require("norm.weight", {D}), device);

  // The LM head: the stored tensor if there is one, else embed_tokens (lm_head_source in family.h).
  const loader::WeightScope lm = weights.scope("language_model");
  const bool head_stored = lm.contains("lm_head.weight");
  m.head_source_ = lm_head_source(head_stored, cfg.tie_word_embeddings);
  if (m.head_source_ == LmHeadSource::TiedAbsent)
    warn(weights.dir(),
         ": llm_config.tie_word_embeddings is false but the checkpoint stores no "
         "language_model.lm_head.weight; using embed_tokens as the LM head");
  m.lm_head = head_stored ? linear_weight(lm, "lm_head.weight", V, D, cfg.quant, device) : ops::Weight(m.embed_tokens);
  return m;
}

LlmWorkspace Qwen2::make_workspace(int64_t max_tokens) const {
  SAILVL_CHECK(max_tokens > 0, Internal, "Qwen2 workspace for ", max_tokens, " tokens");
  const DType act = activation_dtype(device_);
  const int64_t D = cfg_.hidden, F = cfg_.intermediate, HD = cfg_.heads * cfg_.head_dim;
  const int64_t KVD = cfg_.kv_heads * cfg_.head_dim;
  LlmWorkspace ws;
  ws.max_tokens = max_tokens;
  ws.x = Tensor::empty({max_tokens, D}, act, device_);
  ws.n = Tensor::empty({max_tokens, D}, act, device_);
  ws.q = Tensor::empty({max_tokens, HD}, act, device_);
  ws.k = Tensor::empty({max_tokens, KVD}, act, device_);
  ws.v = Tensor::empty({max_tokens, KVD}, act, device_);
  ws.a = Tensor::empty({max_tokens, HD}, act, device_);
  ws.y = Tensor::empty({max_tokens, D}, act, device_);
  ws.gate = Tensor::empty({max_tokens, F}, act, device_);
  ws.up = Tensor::empty({max_tokens, F}, act, device_);
  ws.positions = Tensor::empty({max_tokens}, DType::I64, device_);
  ws.positions_host = device_.is_cpu() ? ws.positions : Tensor::empty({max_tokens}, DType::I64);
  return ws;
}

void Qwen2::embed(const Tensor& out, const Tensor& ids) const {
  ops::embedding(out, ids.device() == device_ ? ids : ids.to(device_), embed_tokens);  // out = E[ids]  [T, D]
}

// x = x + Wo · Attention(RoPE(q), RoPE(k), v),  n = RMSNorm_in(x); the new K/V rows of sequence s
// go to its cache at positions p_s.. (p_s = its cache length before this call).
void Qwen2::attention_block(LlmWorkspace& ws, const Qwen2Layer& L, std::span<const SeqRows> seqs,
                            std::span<const int64_t> starts, int64_t layer, int64_t T) const {
  const int64_t H = cfg_.heads, Hkv = cfg_.kv_heads, Dh = cfg_.head_dim;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const Tensor x = ws.x.narrow(0, 0, T), n = ws.n.narrow(0, 0, T), y = ws.y.narrow(0, 0, T);
  const Tensor q = ws.q.narrow(0, 0, T), a = ws.a.narrow(0, 0, T), pos = ws.positions.narrow(0, 0, T);

  ops::rms_norm(n, x, L.input_layernorm, eps);             // n = RMSNorm_in(x)        [T, D]
  ops::linear(q, n, L.wq, L.bq);                           // q = n·Wqᵀ + bq           [T, H·Dh]
  ops::rope(q.reshape({T, H, Dh}), pos, cfg_.rope_theta);  // q = RoPE(q, positions)   [T, H, Dh]
  if (seqs.size() == 1) {
    // One sequence: k and v are written straight into its cache rows p..p+T-1.
    KvCache& c = *seqs[0].cache;
    const int64_t p = c.length();
    const Tensor k_new = c.k(layer).narrow(0, p, T), v_new = c.v(layer).narrow(0, p, T);  // [T, Hkv, Dh]
    ops::linear(k_new.reshape({T, Hkv * Dh}), n, L.wk, L.bk);  // K[p:p+T] = n·Wkᵀ + bk    [T, Hkv·Dh]
    ops::linear(v_new.reshape({T, Hkv * Dh}), n, L.wv, L.bv);  // V[p:p+T] = n·Wvᵀ + bv    [T, Hkv·Dh]
    ops::rope(k_new, pos, cfg_.rope_theta);                    // K[p:p+T] = RoPE(...)     [T, Hkv, Dh]
  } else {
    // Several sequences: all rows in one GEMM, then each sequence's rows to its own cache.
    const Tensor k = ws.k.narrow(0, 0, T), v = ws.v.narrow(0, 0, T);
    ops::linear(k, n, L.wk, L.bk);                             // k = n·Wkᵀ + bk           [T, Hkv·Dh]
    ops::linear(v, n, L.wv, L.bv);                             // v = n·Wvᵀ + bv           [T, Hkv·Dh]
    ops::rope(k.reshape({T, Hkv, Dh}), pos, cfg_.rope_theta);  // k = RoPE(k, positions) [T, Hkv, Dh]
    for (size_t s = 0; s < seqs.size(); ++s) {
      KvCache& c = *seqs[s].cache;
      const int64_t r = starts[s], rows = seqs[s].rows, p = c.length();
      c.k(layer).narrow(0, p, rows).copy_from(k.narrow(0, r, rows).reshape({rows, Hkv, Dh}));  // K[p:p+rows]
      c.v(layer).narrow(0, p, rows).copy_from(v.narrow(0, r, rows).reshape({rows, Hkv, Dh}));  // V[p:p+rows]
    }
  }
  for (size_t s = 0; s < seqs.size(); ++s) {  // a = softmax(q·Kᵀ/√Dh + causal)·V over each sequence's keys
    const KvCache& c = *seqs[s].cache;
    const int64_t r = starts[s], rows = seqs[s].rows, p = c.length();
    ops::attention(a.narrow(0, r, rows).reshape({rows, H, Dh}), q.narrow(0, r, rows).reshape({rows, H, Dh}),
                   c.k(layer).narrow(0, 0, p + rows), c.v(layer).narrow(0, 0, p + rows),
                   {.causal = true, .q_offset = p});  //                           [rows, H, Dh]
  }
  ops::linear(y, a, L.wo);  // y = a·Woᵀ                [T, D]
  ops::add(x, x, y);        // x = x + y                [T, D]
}

// x = x + W_down(silu(W_gate·m) ⊙ W_up·m),  m = RMSNorm_post(x)
void Qwen2::mlp_block(LlmWorkspace& ws, const Qwen2Layer& L, int64_t T) const {
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const Tensor x = ws.x.narrow(0, 0, T), n = ws.n.narrow(0, 0, T), y = ws.y.narrow(0, 0, T);
  const Tensor g = ws.gate.narrow(0, 0, T), u = ws.up.narrow(0, 0, T);
  ops::rms_norm(n, x, L.post_attention_layernorm, eps);  // m = RMSNorm_post(x)      [T, D]
  ops::linear(g, n, L.w_gate);                           // g = m·W_gateᵀ            [T, F]
  ops::linear(u, n, L.w_up);                             // u = m·W_upᵀ              [T, F]
  ops::silu_mul(g, g, u);                                // g = silu(g) ⊙ u          [T, F]
  ops::linear(y, g, L.w_down);                           // y = g·W_downᵀ            [T, D]
  ops::add(x, x, y);                                     // x = x + y                [T, D]
}

void Qwen2::forward(const Tensor& x_in, std::span<const SeqRows> seqs, LlmWorkspace& ws, const Tensor& logits,
                    const ForwardOptions& opt) const {
  const int64_t D = cfg_.hidden, V = cfg_.vocab;
  SAILVL_CHECK(x_in.dim() == 2 && x_in.size(1) == D, Internal, "Qwen2::forward: input ", x_in.describe(),
               " is not [T, ", D, "]");
  const int64_t T = x_in.size(0), B = static_cast<int64_t>(seqs.size());
  SAILVL_CHECK(T >= 1 && T <= ws.max_tokens, Internal, "Qwen2::forward: chunk of ", T, " tokens, workspace holds ",
               ws.max_tokens);
  std::vector<int64_t> starts(seqs.size());  // first row of each sequence in x
  int64_t rows = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqRows& q = seqs[s];
    SAILVL_CHECK(q.cache && q.rows >= 1, Internal, "Qwen2::forward: sequence ", s, " has no cache or no rows");
    SAILVL_CHECK(q.cache->length() + q.rows <= q.cache->capacity(), ContextOverflow,
                 "KV cache full: ", q.cache->length(), " cached + ", q.rows, " new tokens > capacity ",
                 q.cache->capacity());
    starts[s] = rows;
    rows += q.rows;
  }
  SAILVL_CHECK(B >= 1 && rows == T, Internal, "Qwen2::forward: ", B, " sequences cover ", rows, " of ", T, " rows");
  const int64_t out_rows = opt.all_logits ? T : B;
  if (opt.logits) {
    SAILVL_CHECK(logits.dtype() == DType::F32 && logits.device() == device_, Internal, "Qwen2::forward: logits ",
                 logits.describe(), " must be F32 on ", device_.str());
    SAILVL_CHECK(logits.numel() == out_rows * V && (logits.size(-1) == V), Internal, "logits ", logits.describe(),
                 " are not [", out_rows, ", ", V, "]");
  }

  // Absolute positions: row i of sequence s sits at p_s + i (RoPE angles and the causal mask).
  int64_t* ph = ws.positions_host.data<int64_t>();
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t i = 0; i < seqs[s].rows; ++i) ph[starts[s] + i] = seqs[s].cache->length() + i;
  if (!device_.is_cpu()) ws.positions.narrow(0, 0, T).copy_from(ws.positions_host.narrow(0, 0, T));

  Tensor x = ws.x.narrow(0, 0, T);
  x.copy_from(x_in);  // x = E                    [T, D]
  if (opt.layer_outputs) opt.layer_outputs->clear();
  const int64_t nl = static_cast<int64_t>(layers_.size());
  for (int64_t l = 0; l < nl; ++l) {
    if (opt.control) opt.control->check();  // cancelled: the caches keep their lengths
    LayerScope layer(l, nl);                // for an observer (--profile, --trace)
    attention_block(ws, layers_[static_cast<size_t>(l)], seqs, starts, l, T);
    mlp_block(ws, layers_[static_cast<size_t>(l)], T);
    if (opt.layer_outputs) opt.layer_outputs->push_back(x.clone());  // hidden state after layer l
    if (opt.control) opt.control->report(l + 1, nl);
  }
  for (const SeqRows& q : seqs) q.cache->set_length(q.cache->length() + q.rows);
  if (!opt.logits) return;

  // Final norm and LM head, only on the rows whose logits are wanted.
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  Tensor h = x;  // every row
  if (!opt.all_logits) {
    if (B == 1) {
      h = x.narrow(0, T - 1, 1);  // the last row
    } else {
      h = ws.y.narrow(0, 0, B);  // the last row of each sequence, gathered  [B, D]
      for (int64_t s = 0; s < B; ++s) h.select(0, s).copy_from(x.select(0, starts[s] + seqs[s].rows - 1));
    }
  }
  const Tensor n = ws.n.narrow(0, 0, h.size(0));
  ops::rms_norm(n, h, norm, eps);                           // h = RMSNorm(x)           [rows, D]
  ops::linear(logits.reshape({h.size(0), V}), n, lm_head);  // logits = h·W_headᵀ       [rows, V]
}

// ---- the family (model/family.h) ----

namespace {

// llm_config of Qwen2. Missing keys take Qwen2Config's class defaults: vocab 151936, hidden 4096,
// intermediate 22016, 32 layers, 32 heads, num_key_value_heads = heads, max_position_embeddings
// 32768, rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings False, hidden_act "silu".
void parse(const loader::JsonObject& l, LlmConfig& c) {
  constexpr int64_t kMaxDim = 1 << 20, kMaxLayers = 1024, kMaxHeads = 1024, kMaxVocab = 1 << 24;
  c.vocab = l.integer("vocab_size", 151936, 1, kMaxVocab);
  c.hidden = l.integer("hidden_size", 4096, 1, kMaxDim);
  c.intermediate = l.integer("intermediate_size", 22016, 1, kMaxDim);
  c.layers = l.integer("num_hidden_layers", 32, 1, kMaxLayers);
  c.heads = l.integer("num_attention_heads", 32, 1, kMaxHeads);
  c.kv_heads = l.integer("num_key_value_heads", c.heads, 1, kMaxHeads);
  c.max_position_embeddings = l.integer("max_position_embeddings", 32768, 1, int64_t{1} << 24);
  c.rms_norm_eps = l.positive("rms_norm_eps", 1e-6);
  c.rope_theta = l.positive("rope_theta", 10000.0);
  c.tie_word_embeddings = l.boolean("tie_word_embeddings", false);
  c.hidden_act = l.string("hidden_act", "silu");
  c.bos_token_id = l.id("bos_token_id", 151643);
  c.eos_token_id = l.id("eos_token_id", 151645);
  SAILVL_CHECK(c.hidden_act == "silu", BadModel, l.key_name("hidden_act"), " = \"", escape_for_print(c.hidden_act),
               "\" is not supported (expected \"silu\")");
  SAILVL_CHECK(!l.boolean("use_sliding_window", false), BadModel, l.key_name("use_sliding_window"),
               " = true is not supported");
}

std::string describe(const LlmConfig& l) {
  if (l.hidden == 1536 && l.layers == 28) return "Qwen2.5-1.5B";
  if (l.hidden == 3584 && l.layers == 28) return "Qwen2.5-7B";
  return str_cat("Qwen2(D=", l.hidden, ", ", l.layers, "L)");
}

// docs/MODEL.md §9, in state_dict order (embed_tokens, each layer, norm, then the head).
void tensors(const LlmConfig& l, bool stored_head, std::vector<TensorSpec>& out) {
  const int64_t D = l.hidden, F = l.intermediate, H = l.heads, Hkv = l.kv_heads, Dh = l.head_dim, V = l.vocab;
  out.push_back({"language_model.model.embed_tokens.weight", {V, D}});
  for (int64_t i = 0; i < l.layers; ++i) {
    const std::string L = "language_model.model.layers." + std::to_string(i) + ".";
    out.push_back({L + "self_attn.q_proj.weight", {H * Dh, D}, true});
    out.push_back({L + "self_attn.q_proj.bias", {H * Dh}});
    out.push_back({L + "self_attn.k_proj.weight", {Hkv * Dh, D}, true});
    out.push_back({L + "self_attn.k_proj.bias", {Hkv * Dh}});
    out.push_back({L + "self_attn.v_proj.weight", {Hkv * Dh, D}, true});
    out.push_back({L + "self_attn.v_proj.bias", {Hkv * Dh}});
    out.push_back({L + "self_attn.o_proj.weight", {D, H * Dh}, true});
    out.push_back({L + "mlp.gate_proj.weight", {F, D}, true});
    out.push_back({L + "mlp.up_proj.weight", {F, D}, true});
    out.push_back({L + "mlp.down_proj.weight", {D, F}, true});
    out.push_back({L + "input_layernorm.weight", {D}});
    out.push_back({L + "post_attention_layernorm.weight", {D}});
  }
  out.push_back({"language_model.model.norm.weight", {D}});
  if (stored_head) out.push_back({"language_model.lm_head.weight", {V, D}, true});
}

LlmShape shape(const LlmConfig& l) {
  const int64_t D = l.hidden, F = l.intermediate, HD = l.heads * l.head_dim, KVD = l.kv_heads * l.head_dim;
  LlmShape s;
  s.layers = l.layers;
  s.layer_linears = {{D, HD}, {D, KVD}, {D, KVD}, {HD, D}, {D, F}, {D, F}, {F, D}};  // q, k, v, o, gate, up, down
  s.heads = l.heads;
  s.kv_heads = l.kv_heads;
  s.head_dim = l.head_dim;
  s.scratch_per_row = 3 * D + 2 * HD + 2 * KVD + 2 * F;  // x, n, y; q, a; k, v; gate, up
  return s;
}

std::unique_ptr<LanguageModel> load(const loader::WeightMap& w, const LlmConfig& l, const Device& device) {
  return std::make_unique<Qwen2>(Qwen2::load(w, l, device));
}

}  // namespace

LlmFamily qwen2_family() {
  return {"qwen2", "Qwen2", "language_model.model.layers.", parse, describe, tensors, shape, load};
}

}  // namespace sailvl::model
