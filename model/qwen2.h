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
// tie_word_embeddings says; only a checkpoint without one uses embed_tokens (model/family.h,
// lm_head_source). One forward() handles a prefill chunk (T rows of one sequence), one decode step
// (T = 1) and a batched decode step (one row of each of B sequences, each with its own KV cache:
// the linears run on all B rows at once, attention per sequence) alike; the K/V of every row it
// sees are appended to that row's cache.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "model/kv_cache.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// One Qwen2DecoderLayer; names relative to language_model.model.layers.{i}.
struct Qwen2Layer {
  Tensor input_layernorm;  // input_layernorm.weight            [D]
  ops::Weight wq;
  Tensor bq;  // self_attn.q_proj.{weight,bias}    [H·Dh, D], [H·Dh]
  ops::Weight wk;
  Tensor bk;  // self_attn.k_proj.{weight,bias}    [Hkv·Dh, D], [Hkv·Dh]
  ops::Weight wv;
  Tensor bv;                        // self_attn.v_proj.{weight,bias}    [Hkv·Dh, D], [Hkv·Dh]
  ops::Weight wo;                   // self_attn.o_proj.weight           [D, H·Dh]
  Tensor post_attention_layernorm;  // post_attention_layernorm.weight   [D]
  ops::Weight w_gate, w_up;         // mlp.{gate,up}_proj.weight         [F, D]
  ops::Weight w_down;               // mlp.down_proj.weight              [D, F]
};

class Qwen2 : public LanguageModel {
 public:
  static Qwen2 load(const loader::WeightMap& weights, const LlmConfig& cfg, const Device& device);

  const LlmConfig& config() const override { return cfg_; }
  const Device& device() const override { return device_; }
  LmHeadSource head_source() const override { return head_source_; }
  LlmWorkspace make_workspace(int64_t max_tokens) const override;
  void embed(const Tensor& out, const Tensor& ids) const override;
  using LanguageModel::forward;
  void forward(const Tensor& x, std::span<const SeqRows> seqs, LlmWorkspace& ws, const Tensor& logits,
               const ForwardOptions& opt = {}) const override;

 private:
  void attention_block(LlmWorkspace& ws, const Qwen2Layer& L, std::span<const SeqRows> seqs,
                       std::span<const int64_t> starts, int64_t layer, int64_t T) const;
  void mlp_block(LlmWorkspace& ws, const Qwen2Layer& L, int64_t T) const;

  LlmConfig cfg_;
  Device device_;
  LmHeadSource head_source_ = LmHeadSource::Stored;
  Tensor embed_tokens;  // language_model.model.embed_tokens.weight  [V, D]
  std::vector<Qwen2Layer> layers_;
  Tensor norm;          // language_model.model.norm.weight           [D]
  ops::Weight lm_head;  // language_model.lm_head.weight if stored, else embed_tokens  [V, D]
};

// The family entry (model/families.cpp): llm_config.model_type "qwen2".
LlmFamily qwen2_family();

}  // namespace sailvl::model
