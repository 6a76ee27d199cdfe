// The shapes both op benchmarks (bench_ops_cpu.cpp, bench_ops_cuda.cpp) run, in one table, so the
// CPU and CUDA rows of one op always describe the same model step.
//
// Models (docs/MODEL.md §2, checkpoint/presets.cpp):
//   Qwen2.5-1.5B  (SAIL-VL-2B, 1d5-2B)  D 1536, F 8960,  H 12, Hkv 2, Dh 128, V 151936
//   Qwen2.5-7B    (SAIL-VL-8B variants)  D 3584, F 18944, H 28, Hkv 4, Dh 128, V 152064
//   InternViT-300M (2B, 8B, 1d5-8B)      C 1024, F 4096, 16 heads × 64, 1025 tokens per tile (CLS + 32²),
//                                        LayerNorm, GELU-erf MLP, layer scale
//   AIMv2-Huge (1d5-2B, 1d6-8B)          C 1536, F 4096, 12 heads × 128, 1024 tokens per tile,
//                                        RMSNorm, SwiGLU MLP (fc1, fc3 -> fc2)
//   Projector                            pixel_shuffle_v2 [T, 1024, C] -> [T, 256, 4C], LayerNorm(4C),
//                                        Linear 4C -> D, GELU, Linear D -> D
// Token counts: a 4:3 photo gives 7 tiles at max_dynamic_patch 10 and 13 at 12; 256 tokens per tile
// make the 1792 / 3328 image tokens of the prefill rows (the template adds ~50, left out).
// The vision towers run one tile at a time today (model/intern_vit.cpp, aimv2.cpp: M = 1025/1024);
// the 7- and 13-tile rows are the shapes a batched-tile forward would run.
//
// Every row has a tag "<model>/<phase>/<what>" and its numbers; each benchmark file turns a row into
// "<op>/<tag>/<dim>:<n>/..." and computes the bytes and FLOPs for its own dtypes. Rows whose op costs
// more than kSmokeFlops are "heavy": the CPU benchmark registers them only with SAILVL_BENCH_FULL=1.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "ops/ops.h"

namespace sailvl::bench {

struct Llm {
  const char* tag;
  int64_t D, F, H, Hkv, Dh, V;
  int64_t allowed_vocab;  // the SAIL-VL tokenizer's size (151643 + 31 added); the rest of V is padding rows
};
inline constexpr Llm kQwen15B{"1.5b", 1536, 8960, 12, 2, 128, 151936, 151674};
inline constexpr Llm kQwen7B{"7b", 3584, 18944, 28, 4, 128, 152064, 151674};
inline constexpr Llm kLlms[] = {kQwen15B, kQwen7B};

struct Vit {
  const char* tag;
  int64_t C, F, H, Dh;
  int64_t N;     // tokens per tile seen by the blocks (InternViT prepends CLS)
  int64_t S, P;  // tile side, patch side: G = S / P = 32, G² = 1024 patches
  bool aimv2;    // RMSNorm + SwiGLU (fc1, fc3, fc2) rather than LayerNorm + GELU (fc1, fc2) + layer scale
};
inline constexpr Vit kInternViT{"internvit", 1024, 4096, 16, 64, 1025, 448, 14, false};
inline constexpr Vit kAimv2{"aimv2", 1536, 4096, 12, 128, 1024, 448, 14, true};
inline constexpr Vit kVits[] = {kInternViT, kAimv2};

inline constexpr int64_t kTokensPerTile = 256;  // after pixel_shuffle_v2 (32² / 4)
inline constexpr int64_t kTileCounts[] = {7, 13};
inline constexpr int64_t kPrefillTokens[] = {7 * kTokensPerTile, 13 * kTokensPerTile};  // 1792, 3328
inline constexpr int64_t kDecodeContexts[] = {512, 2048, 8192};

// Rows costing more than this many FLOPs per call (about 0.1-0.2 s on 2 AVX2 cores) are heavy.
inline constexpr double kSmokeFlops = 20e9;

// SAILVL_BENCH_FULL=1 (any value but "0" or empty) registers the heavy rows too.
inline bool full_mode() {
  const char* e = std::getenv("SAILVL_BENCH_FULL");
  return e && *e && std::string(e) != "0";
}

// "<dim>:<n>/<dim>:<n>" in Google Benchmark's ArgNames style, so --benchmark_filter can match sizes.
inline std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
  std::string s;
  for (const auto& [k, v] : d) {
    if (!s.empty()) s += '/';
    s += k;
    s += ':';
    s += std::to_string(v);
  }
  return s;
}

// ---- linear: out[M, N] = x[M, K] · w[N, K]ᵀ (+ b) ----
struct LinearRow {
  std::string tag;
  int64_t M, N, K;
  bool bias;
  double flops() const { return 2.0 * M * N * K; }
};

inline std::vector<LinearRow> linear_rows() {
  std::vector<LinearRow> r;
  for (const Llm& m : kLlms) {
    const std::string t = m.tag;
    const int64_t HD = m.H * m.Dh, KVD = m.Hkv * m.Dh;
    // Decode (M = 1): each weight is read once per token.
    r.push_back({t + "/decode/q", 1, HD, m.D, true});          // q_proj
    r.push_back({t + "/decode/k_v", 1, KVD, m.D, true});       // k_proj, v_proj (each)
    r.push_back({t + "/decode/o", 1, m.D, HD, false});         // o_proj
    r.push_back({t + "/decode/gate_up", 1, m.F, m.D, false});  // gate_proj, up_proj (each)
    r.push_back({t + "/decode/down", 1, m.D, m.F, false});     // down_proj
    r.push_back({t + "/decode/lm_head", 1, m.V, m.D, false});  // lm_head (also the prefill's last row)
    // The server's batched decode: one step of 4 and of 8 sequences (the weights read once for all).
    for (int64_t B : {4, 8}) {
      r.push_back({t + "/batch" + std::to_string(B) + "/gate_up", B, m.F, m.D, false});
      r.push_back({t + "/batch" + std::to_string(B) + "/down", B, m.D, m.F, false});
    }
    // Prefill of a 7- / 13-tile prompt.
    for (int64_t T : kPrefillTokens) {
      const std::string p = t + "/prefill" + std::to_string(T);
      r.push_back({p + "/q", T, HD, m.D, true});
      r.push_back({p + "/k_v", T, KVD, m.D, true});
      r.push_back({p + "/o", T, m.D, HD, false});
      r.push_back({p + "/gate_up", T, m.F, m.D, false});
      r.push_back({p + "/down", T, m.D, m.F, false});
    }
  }
  for (const Vit& v : kVits) {
    const std::string t = v.tag;
    // Per tile (how the towers run now), then 7 and 13 tiles stacked.
    std::vector<std::pair<std::string, int64_t>> ms = {{"tile", v.N}};
    for (int64_t n : kTileCounts) ms.push_back({std::to_string(n) + "tiles", n * v.N});
    for (const auto& [name, M] : ms) {
      const std::string p = t + "/" + name;
      r.push_back({p + "/qkv_o", M, v.C, v.C, true});                         // q, k, v, proj (each C × C)
      r.push_back({p + (v.aimv2 ? "/fc1_fc3" : "/fc1"), M, v.F, v.C, true});  // MLP up (AIMv2: two of them)
      r.push_back({p + "/fc2", M, v.C, v.F, true});                           // MLP down
    }
  }
  // Projector first linear 4C -> D (the second, D -> D, has the shape of the LLM's o_proj rows).
  for (const Vit& v : kVits)
    for (const Llm& m : kLlms)
      for (int64_t n : kTileCounts)
        r.push_back({std::string("proj_") + v.tag + "_" + m.tag + "/" + std::to_string(n) + "tiles/w1",
                     n * kTokensPerTile, m.D, 4 * v.C, true});
  return r;
}

// ---- linear with quantised weights (ops/quant.h, docs/QUANTIZATION.md) ----
// The decode GEMVs of both LLMs (the rows of linear_rows() with M = 1) and the GEMM at the 1.5B's
// prefill q and gate/up shapes, for each stored format. (The BF16-vs-q8-vs-q4 and q4-candidate
// comparisons run on the M = 1 rows of linear_rows(): bench_ops_cpu.cpp gemv_cmp, gemv_q4study.)
struct QuantLinearRow {
  std::string tag;  // "<model>/<phase>/<what>" as in linear_rows()
  int64_t M, N, K;
  ops::QuantType type;
  int64_t group;
  bool asym;  // the q4 study's asymmetric variant (not a stored format)
  double flops() const { return 2.0 * M * N * K; }
};

inline std::vector<QuantLinearRow> quant_linear_rows() {
  std::vector<QuantLinearRow> r;
  for (ops::QuantType t : {ops::QuantType::Q8, ops::QuantType::Q4})
    for (const LinearRow& l : linear_rows()) {
      const bool prefill = l.tag == "1.5b/prefill1792/q" || l.tag == "1.5b/prefill1792/gate_up";
      if (l.M == 1 || prefill) r.push_back({l.tag, l.M, l.N, l.K, t, ops::quant_group(t), false});
    }
  return r;
}

// ---- attention: out[T, H, Dh] over k, v [S, Hkv, Dh] ----
struct AttentionRow {
  std::string tag;
  int64_t T, S, H, Hkv, Dh;
  bool causal;            // q_offset = S - T (prefill: 0; decode: the S - 1 cached keys)
  double pairs() const {  // (query, visible key) pairs per head
    if (!causal) return static_cast<double>(T) * S;
    double p = 0;
    for (int64_t t = 0; t < T; ++t) p += static_cast<double>(S - T + t + 1);
    return p;
  }
  double flops() const { return 4.0 * Dh * H * pairs(); }  // Q·Kᵀ and P·V, 2·Dh each
};

inline std::vector<AttentionRow> attention_rows() {
  std::vector<AttentionRow> r;
  for (const Llm& m : kLlms) {
    for (int64_t T : kPrefillTokens)
      r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T), T, T, m.H, m.Hkv, m.Dh, true});
    for (int64_t S : kDecodeContexts)
      r.push_back({std::string(m.tag) + "/decode_ctx" + std::to_string(S), 1, S, m.H, m.Hkv, m.Dh, true});
  }
  for (const Vit& v : kVits) r.push_back({std::string(v.tag) + "/tile", v.N, v.N, v.H, v.H, v.Dh, false});
  return r;
}

// ---- row-wise ops over [T, D] (norms, elementwise) ----
struct RowsRow {
  std::string tag;
  int64_t T, D;
};

inline std::vector<RowsRow> rms_norm_rows() {  // Qwen2 input/post norms; AIMv2 norm_1/norm_2
  std::vector<RowsRow> r;
  for (const Llm& m : kLlms) {
    r.push_back({std::string(m.tag) + "/decode", 1, m.D});
    for (int64_t T : kPrefillTokens) r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T), T, m.D});
  }
  r.push_back({"aimv2/tile", kAimv2.N, kAimv2.C});
  return r;
}

inline std::vector<RowsRow> layer_norm_rows() {  // InternViT norm1/norm2; projector LayerNorm(4C)
  std::vector<RowsRow> r;
  r.push_back({"internvit/tile", kInternViT.N, kInternViT.C});
  for (const Vit& v : kVits)
    for (int64_t n : kTileCounts)
      r.push_back({std::string("proj_") + v.tag + "/" + std::to_string(n) + "tiles", n * kTokensPerTile, 4 * v.C});
  return r;
}

inline std::vector<RowsRow> gelu_rows() {  // InternViT MLP hidden; projector hidden [tiles·256, D]
  std::vector<RowsRow> r;
  r.push_back({"internvit/tile", kInternViT.N, kInternViT.F});
  for (const Llm& m : kLlms)
    for (int64_t n : kTileCounts)
      r.push_back({std::string("proj_") + m.tag + "/" + std::to_string(n) + "tiles", n * kTokensPerTile, m.D});
  return r;
}

inline std::vector<RowsRow> silu_mul_rows() {  // Qwen2 MLP; AIMv2 SwiGLU
  std::vector<RowsRow> r;
  for (const Llm& m : kLlms) {
    r.push_back({std::string(m.tag) + "/decode", 1, m.F});
    for (int64_t T : kPrefillTokens) r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T), T, m.F});
  }
  r.push_back({"aimv2/tile", kAimv2.N, kAimv2.F});
  return r;
}

inline std::vector<RowsRow> add_rows() {  // residual adds: Qwen2, AIMv2 (x = x + y)
  std::vector<RowsRow> r;
  for (const Llm& m : kLlms) {
    r.push_back({std::string(m.tag) + "/decode", 1, m.D});
    for (int64_t T : kPrefillTokens) r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T), T, m.D});
  }
  r.push_back({"aimv2/tile", kAimv2.N, kAimv2.C});
  return r;
}

inline std::vector<RowsRow> add_scaled_rows() {  // InternViT h = h + ls ⊙ y
  return {{"internvit/tile", kInternViT.N, kInternViT.C}};
}

// ---- rope on q [T, H, Dh] in place (k is the same kernel on Hkv heads: H / Hkv times cheaper) ----
struct RopeRow {
  std::string tag;
  int64_t T, H, Dh;
};
inline std::vector<RopeRow> rope_rows() {
  std::vector<RopeRow> r;
  for (const Llm& m : kLlms) {
    r.push_back({std::string(m.tag) + "/decode/q", 1, m.H, m.Dh});
    for (int64_t T : kPrefillTokens)
      r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T) + "/q", T, m.H, m.Dh});
  }
  return r;
}

// ---- embedding: out[T, D] = table[ids] over the full vocabulary table ----
struct EmbeddingRow {
  std::string tag;
  int64_t T, V, D;
};
inline std::vector<EmbeddingRow> embedding_rows() {
  std::vector<EmbeddingRow> r;
  for (const Llm& m : kLlms) {
    r.push_back({std::string(m.tag) + "/decode", 1, m.V, m.D});
    for (int64_t T : kPrefillTokens) r.push_back({std::string(m.tag) + "/prefill" + std::to_string(T), T, m.V, m.D});
  }
  return r;
}

// ---- scatter_rows: the projector's K image rows into the prompt embeddings [R, D] ----
struct ScatterRow {
  std::string tag;
  int64_t K, R, D;
};
inline std::vector<ScatterRow> scatter_rows_rows() {
  std::vector<ScatterRow> r;
  for (const Llm& m : kLlms)
    for (int64_t K : kPrefillTokens)
      r.push_back({std::string(m.tag) + "/prefill" + std::to_string(K), K, K + 64, m.D});  // + ~64 text tokens
  return r;
}

// ---- pixel_shuffle_v2: [T, 1024, C] -> [T, 256, 4C] ----
struct ShuffleRow {
  std::string tag;
  int64_t T, N, C;
};
inline std::vector<ShuffleRow> pixel_shuffle_rows() {
  std::vector<ShuffleRow> r;
  for (const Vit& v : kVits)
    for (int64_t n : kTileCounts) {
      const int64_t G = v.S / v.P;
      r.push_back({std::string(v.tag) + "/" + std::to_string(n) + "tiles", n, G * G, v.C});
    }
  return r;
}

// ---- patch_embed: pixels [T, 3, S, S] -> [T, G², C] (one tile per call, as the towers run) ----
struct PatchRow {
  std::string tag;
  int64_t T, S, P, C;
  double flops() const { return 2.0 * T * (S / P) * (S / P) * C * 3 * P * P; }
};
inline std::vector<PatchRow> patch_embed_rows() {
  std::vector<PatchRow> r;
  for (const Vit& v : kVits) r.push_back({std::string(v.tag) + "/tile", 1, v.S, v.P, v.C});
  return r;
}

// ---- sample over the full Qwen2.5 vocabulary ----
enum class SampleMode { Greedy, TopK50, TopP09 };
struct SampleRow {
  std::string tag;
  int64_t V, allowed;
  SampleMode mode;
};
inline std::vector<SampleRow> sample_rows() {
  const Llm& m = kQwen15B;  // 7B's vocabulary is 128 rows longer: same cost
  return {{std::string(m.tag) + "/greedy", m.V, m.allowed_vocab, SampleMode::Greedy},
          {std::string(m.tag) + "/temp1_topk50", m.V, m.allowed_vocab, SampleMode::TopK50},    // the card's setting
          {std::string(m.tag) + "/temp1_topp0.9", m.V, m.allowed_vocab, SampleMode::TopP09}};  // sorts all of V
}
// The sampler settings of a row (the same on CPU and CUDA).
inline ops::SamplingParams sampling_params(const SampleRow& r) {
  ops::SamplingParams p;
  p.allowed_vocab = r.allowed;
  if (r.mode != SampleMode::Greedy) p.temperature = 1.0f;
  if (r.mode == SampleMode::TopK50) p.top_k = 50;
  if (r.mode == SampleMode::TopP09) p.top_p = 0.9f;
  return p;
}

}  // namespace sailvl::bench
