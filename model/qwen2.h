// Qwen2 / Qwen2.5, the language model of every SAIL-VL variant (docs/MODEL.md §7).
//
// Source: transformers' modeling_qwen2.py (Qwen2RMSNorm, Qwen2RotaryEmbedding, Qwen2Attention,
// Qwen2MLP, Qwen2DecoderLayer, Qwen2Model, Qwen2ForCausalLM).
//
//   x = E                                               [T, D]   input embeddings, positions p..p+T-1
//   for each layer:
//     n = RMSNorm_in(x)                                 [T, D]
//     q = RoPE(n·Wqᵀ + bq), k = RoPE(n·Wkᵀ + bk)        [T, H, Dh], [T, Hkv, Dh]  -> K cache
//     v = n·Wvᵀ + bv                                    [T, Hkv, Dh]              -> V cache
//     x = x + Wo · softmax(q·Kᵀ/√Dh + causal) · V       [T, D]   GQA: head h reads kv head h/(H/Hkv)
//     m = RMSNorm_post(x)                               [T, D]
//     x = x + W_down(silu(W_gate·m) ⊙ W_up·m)           [T, D]
//   logits = norm(x)·W_headᵀ                            [V]      last position (or all, for tests)
//
// W_head is language_model.lm_head.weight whenever the checkpoint stores it, whatever
// tie_word_embeddings says; only a checkpoint without one uses embed_tokens (lm_head_source below).
// One forward() handles a whole prompt (prefill, T = prompt length)
// and one decode step (T = 1) alike; the K/V of every position it sees are appended to the cache.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "loader/config.h"
#include "loader/weights.h"
#include "model/kv_cache.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// Where the LM head comes from. SAIL-VL's remote code (modeling_sailvl.py under transformers 4.45)
// builds its nested Qwen2 inside from_pretrained's no-init context, so the nested model is never
// re-tied: a stored language_model.lm_head.weight is loaded into lm_head and used even when
// llm_config.tie_word_embeddings is true. Only without a stored head is embed_tokens the head.
enum class LmHeadSource {
  Stored,      // language_model.lm_head.weight is stored: it is the head (tie flag ignored)
  Tied,        // none stored, tie_word_embeddings true: the head is embed_tokens
  TiedAbsent,  // none stored, tie_word_embeddings false: the remote code would leave the head
               // uninitialised; we use embed_tokens (the only sensible weights) and warn
};
LmHeadSource lm_head_source(bool head_stored, bool tie_word_embeddings);
// One line for `inspect` and logs: which head and why.
const char* lm_head_source_text(LmHeadSource s);

// One Qwen2DecoderLayer; names relative to language_model.model.layers.{i}.
struct Qwen2Layer {
  Tensor input_layernorm;           // input_layernorm.weight            [D]
  Tensor wq, bq;                    // self_attn.q_proj.{weight,bias}    [H·Dh, D], [H·Dh]
  Tensor wk, bk;                    // self_attn.k_proj.{weight,bias}    [Hkv·Dh, D], [Hkv·Dh]
  Tensor wv, bv;                    // self_attn.v_proj.{weight,bias}    [Hkv·Dh, D], [Hkv·Dh]
  Tensor wo;                        // self_attn.o_proj.weight           [D, H·Dh]
  Tensor post_attention_layernorm;  // post_attention_layernorm.weight   [D]
  Tensor w_gate, w_up;              // mlp.{gate,up}_proj.weight         [F, D]
  Tensor w_down;                    // mlp.down_proj.weight              [D, F]
};

// Activation buffers for chunks of up to `max_tokens` rows; allocated once, before the prefill,
// and reused by every decode step (which uses the first row of each).
struct Qwen2Workspace {
  int64_t max_tokens = 0;
  Tensor x;               // [Tmax, D]      residual stream
  Tensor n;               // [Tmax, D]      normed input of a sub-block
  Tensor q;               // [Tmax, H·Dh]
  Tensor a;               // [Tmax, H·Dh]   attention output
  Tensor y;               // [Tmax, D]      sub-block output
  Tensor gate, up;        // [Tmax, F]
  Tensor positions;       // [Tmax] I64 on the model's device
  Tensor positions_host;  // [Tmax] I64 on the host (staging for positions)
};

struct Qwen2ForwardOptions {
  // Logits for every position ([T, V]) instead of the last one only ([V]); for tests.
  bool all_logits = false;
  // If set, receives the output of every decoder layer (before the final norm): L tensors [T, D],
  // copies, for taps and tests (what a forward hook on each Qwen2DecoderLayer sees).
  std::vector<Tensor>* layer_outputs = nullptr;
};

class Qwen2 {
 public:
  static Qwen2 load(const loader::WeightMap& weights, const loader::LlmConfig& cfg, const Device& device);

  const loader::LlmConfig& config() const { return cfg_; }
  const Device& device() const { return device_; }
  LmHeadSource head_source() const { return head_source_; }
  bool tied_head() const { return head_source_ != LmHeadSource::Stored; }

  KvCache make_cache(int64_t max_seq) const;
  Qwen2Workspace make_workspace(int64_t max_tokens) const;

  // out [T, D] = embed_tokens[ids]; ids I64 [T] (host or device).
  void embed(const Tensor& out, const Tensor& ids) const;

  // Runs the decoder over x [T, D] (the embeddings of positions [cache.length(), cache.length()+T)),
  // appends their keys and values to the cache and writes logits: [V] for the last position, or
  // [T, V] with opt.all_logits. logits must be F32. T <= ws.max_tokens and the cache must have room.
  void forward(const Tensor& x, KvCache& cache, Qwen2Workspace& ws, const Tensor& logits,
               const Qwen2ForwardOptions& opt = {}) const;

 private:
  void attention_block(Qwen2Workspace& ws, const Qwen2Layer& L, KvCache& cache, int64_t layer, int64_t p,
                       int64_t T) const;
  void mlp_block(Qwen2Workspace& ws, const Qwen2Layer& L, int64_t T) const;

  loader::LlmConfig cfg_;
  Device device_;
  LmHeadSource head_source_ = LmHeadSource::Stored;
  Tensor embed_tokens;  // language_model.model.embed_tokens.weight  [V, D]
  std::vector<Qwen2Layer> layers_;
  Tensor norm;     // language_model.model.norm.weight           [D]
  Tensor lm_head;  // language_model.lm_head.weight if stored, else embed_tokens  [V, D]
};

}  // namespace sailvl::model
