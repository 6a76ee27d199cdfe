// Qwen2 decoder forward: see qwen2.h for the math and its source.
#include "model/qwen2.h"

#include <string>

#include "model/model.h"
#include "ops/ops.h"
#include "tensor/log.h"

namespace sailvl::model {

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

Qwen2 Qwen2::load(const loader::WeightMap& weights, const loader::LlmConfig& cfg, const Device& device) {
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
    L.wq = place(W.require("self_attn.q_proj.weight", {H * Dh, D}), device);
    L.bq = place_as_activation(W.require("self_attn.q_proj.bias", {H * Dh}), device);
    L.wk = place(W.require("self_attn.k_proj.weight", {Hkv * Dh, D}), device);
    L.bk = place_as_activation(W.require("self_attn.k_proj.bias", {Hkv * Dh}), device);
    L.wv = place(W.require("self_attn.v_proj.weight", {Hkv * Dh, D}), device);
    L.bv = place_as_activation(W.require("self_attn.v_proj.bias", {Hkv * Dh}), device);
    L.wo = place(W.require("self_attn.o_proj.weight", {D, H * Dh}), device);
    L.post_attention_layernorm = place_as_activation(W.require("post_attention_layernorm.weight", {D}), device);
    L.w_gate = place(W.require("mlp.gate_proj.weight", {F, D}), device);
    L.w_up = place(W.require("mlp.up_proj.weight", {F, D}), device);
    L.w_down = place(W.require("mlp.down_proj.weight", {D, F}), device);
    m.layers_.push_back(std::move(L));
  }
  m.norm = place_as_activation(M.require("norm.weight", {D}), device);

  // The LM head: the stored tensor if there is one, else embed_tokens (lm_head_source in qwen2.h).
  const std::optional<Tensor> head = weights.scope("language_model").optional("lm_head.weight", {V, D});
  m.head_source_ = lm_head_source(head.has_value(), cfg.tie_word_embeddings);
  if (m.head_source_ == LmHeadSource::TiedAbsent)
    warn(weights.dir(),
         ": llm_config.tie_word_embeddings is false but the checkpoint stores no "
         "language_model.lm_head.weight; using embed_tokens as the LM head");
  m.lm_head = head ? place(*head, device) : m.embed_tokens;
  return m;
}

KvCache Qwen2::make_cache(int64_t max_seq) const {
  return KvCache(cfg_.layers, max_seq, cfg_.kv_heads, cfg_.head_dim, activation_dtype(device_), device_);
}

Qwen2Workspace Qwen2::make_workspace(int64_t max_tokens) const {
  SAILVL_CHECK(max_tokens > 0, Internal, "Qwen2 workspace for ", max_tokens, " tokens");
  const DType act = activation_dtype(device_);
  const int64_t D = cfg_.hidden, F = cfg_.intermediate, HD = cfg_.heads * cfg_.head_dim;
  Qwen2Workspace ws;
  ws.max_tokens = max_tokens;
  ws.x = Tensor::empty({max_tokens, D}, act, device_);
  ws.n = Tensor::empty({max_tokens, D}, act, device_);
  ws.q = Tensor::empty({max_tokens, HD}, act, device_);
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

// x = x + Wo · Attention(RoPE(q), RoPE(k), v),  n = RMSNorm_in(x); K/V rows p..p+T-1 go to the cache.
void Qwen2::attention_block(Qwen2Workspace& ws, const Qwen2Layer& L, KvCache& cache, int64_t layer, int64_t p,
                            int64_t T) const {
  const int64_t H = cfg_.heads, Hkv = cfg_.kv_heads, Dh = cfg_.head_dim;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const Tensor x = ws.x.narrow(0, 0, T), n = ws.n.narrow(0, 0, T), y = ws.y.narrow(0, 0, T);
  const Tensor q = ws.q.narrow(0, 0, T), a = ws.a.narrow(0, 0, T), pos = ws.positions.narrow(0, 0, T);
  const Tensor k_new = cache.k(layer).narrow(0, p, T);  // this chunk's rows of the cache  [T, Hkv, Dh]
  const Tensor v_new = cache.v(layer).narrow(0, p, T);

  ops::rms_norm(n, x, L.input_layernorm, eps);                  // n = RMSNorm_in(x)        [T, D]
  ops::linear(q, n, L.wq, L.bq);                                // q = n·Wqᵀ + bq           [T, H·Dh]
  ops::linear(k_new.reshape({T, Hkv * Dh}), n, L.wk, L.bk);     // K[p:p+T] = n·Wkᵀ + bk    [T, Hkv·Dh]
  ops::linear(v_new.reshape({T, Hkv * Dh}), n, L.wv, L.bv);     // V[p:p+T] = n·Wvᵀ + bv    [T, Hkv·Dh]
  ops::rope(q.reshape({T, H, Dh}), pos, cfg_.rope_theta);       // q = RoPE(q, p..p+T-1)    [T, H, Dh]
  ops::rope(k_new, pos, cfg_.rope_theta);                       // K[p:p+T] = RoPE(...)     [T, Hkv, Dh]
  ops::attention(a.reshape({T, H, Dh}), q.reshape({T, H, Dh}),  // a = softmax(q·Kᵀ/√Dh + causal)·V
                 cache.k(layer).narrow(0, 0, p + T),            //   over keys 0..p+T-1     [T, H, Dh]
                 cache.v(layer).narrow(0, 0, p + T), {.causal = true, .q_offset = p});
  ops::linear(y, a, L.wo);  // y = a·Woᵀ                [T, D]
  ops::add(x, x, y);        // x = x + y                [T, D]
}

// x = x + W_down(silu(W_gate·m) ⊙ W_up·m),  m = RMSNorm_post(x)
void Qwen2::mlp_block(Qwen2Workspace& ws, const Qwen2Layer& L, int64_t T) const {
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

void Qwen2::forward(const Tensor& x_in, KvCache& cache, Qwen2Workspace& ws, const Tensor& logits,
                    const Qwen2ForwardOptions& opt) const {
  const int64_t D = cfg_.hidden, V = cfg_.vocab;
  SAILVL_CHECK(x_in.dim() == 2 && x_in.size(1) == D, Internal, "Qwen2::forward: input ", x_in.describe(),
               " is not [T, ", D, "]");
  const int64_t T = x_in.size(0), p = cache.length();
  SAILVL_CHECK(T >= 1 && T <= ws.max_tokens, Internal, "Qwen2::forward: chunk of ", T, " tokens, workspace holds ",
               ws.max_tokens);
  SAILVL_CHECK(p + T <= cache.capacity(), ContextOverflow, "KV cache full: ", p, " cached + ", T,
               " new tokens > capacity ", cache.capacity());
  SAILVL_CHECK(logits.dtype() == DType::F32 && logits.device() == device_, Internal, "Qwen2::forward: logits ",
               logits.describe(), " must be F32 on ", device_.str());
  if (opt.all_logits)
    SAILVL_CHECK(logits.dim() == 2 && logits.size(0) == T && logits.size(1) == V, Internal, "logits ",
                 logits.describe(), " are not [", T, ", ", V, "]");
  else
    SAILVL_CHECK(logits.dim() == 1 && logits.size(0) == V, Internal, "logits ", logits.describe(), " are not [", V,
                 "]");

  // Absolute positions of this chunk: p, p+1, ..., p+T-1 (RoPE angles and the causal mask).
  int64_t* ph = ws.positions_host.data<int64_t>();
  for (int64_t t = 0; t < T; ++t) ph[t] = p + t;
  if (!device_.is_cpu()) ws.positions.narrow(0, 0, T).copy_from(ws.positions_host.narrow(0, 0, T));

  Tensor x = ws.x.narrow(0, 0, T);
  x.copy_from(x_in);  // x = E                    [T, D]
  if (opt.layer_outputs) opt.layer_outputs->clear();
  const int64_t nl = static_cast<int64_t>(layers_.size());
  for (int64_t l = 0; l < nl; ++l) {
    attention_block(ws, layers_[static_cast<size_t>(l)], cache, l, p, T);
    mlp_block(ws, layers_[static_cast<size_t>(l)], T);
    if (opt.layer_outputs) opt.layer_outputs->push_back(x.clone());  // hidden state after layer l
  }
  cache.set_length(p + T);

  // Final norm and LM head, only on the rows whose logits are wanted.
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const int64_t r0 = opt.all_logits ? 0 : T - 1, rows = T - r0;
  const Tensor n = ws.n.narrow(0, r0, rows);
  ops::rms_norm(n, x.narrow(0, r0, rows), norm, eps);  // h = RMSNorm(x)           [rows, D]
  ops::linear(logits.reshape({rows, V}), n, lm_head);  // logits = h·W_headᵀ       [rows, V]
}

}  // namespace sailvl::model
