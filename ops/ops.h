// The op API: every numerical step of SAIL-VL, one declaration each.
//
// Each op writes into a caller-allocated `out` (so the model allocates before its loops) and
// dispatches on `out.device()` in exactly one place (ops/dispatch.cpp): CPU implementations are in
// ops/cpu/<op>.cpp (Eigen/OpenMP, F32 math), CUDA ones in ops/cuda/<op>.cu (BF16 storage, F32
// accumulation). Model code never sees #ifdef. All tensors of one call live on one device.
//
// Conventions (PyTorch order, last dim contiguous unless stated):
//   T tokens, D model width, H heads, Hkv key/value heads, Dh head dim, V vocabulary.
//   Weights are [out, in] as stored in the checkpoint (BF16 views into the mmap on CPU).
//   Activations are F32 on CPU and BF16 (or F32 where stated) on CUDA.
// Preconditions are checked at the dispatch boundary with ErrorKind::Internal (they are bugs, not
// bad input).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "ops/quant.h"
#include "tensor/tensor.h"

namespace sailvl::ops {

// Threads for CPU ops (OpenMP); 0 = all cores. Returns the value in effect.
int set_num_threads(int n);
int num_threads();

// out[..., N] = x[..., K] · w[N, K]ᵀ (+ bias[N]).  Any leading dims on x/out (flattened, must be
// contiguous rows). w may be BF16/F16/F32 (a Tensor converts to a Weight) or quantised q8/q4
// (ops/quant.h, docs/QUANTIZATION.md: CPU only; a quantised weight on CUDA is ErrorKind::BadModel);
// accumulation is F32.
void linear(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias = std::nullopt);

// LayerNorm over the last dim: out = (x - mean) / sqrt(var + eps) * w + b   (biased variance)
void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps);

// RMSNorm over the last dim with HF's cast order (Qwen2RMSNorm / AIMv2 RMSNorm):
//   out = cast_to_act_dtype(x_f32 * rsqrt(mean(x_f32²) + eps)) * w
void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps);

// Rotary embedding in place on x [T, H, Dh] (non-interleaved, rotate_half pairs d and d + Dh/2),
// position of row t = positions[t] (I64 or I32, [T]). inv_freq = 1 / theta^(2i/Dh), computed as HF
// does in F32; cos/sin rounded to the activation dtype as HF does.
void rope(const Tensor& x, const Tensor& positions, double theta);

struct AttentionParams {
  bool causal = false;   // key j is visible to query i iff j <= q_offset + i
  int64_t q_offset = 0;  // absolute position of query row 0 (= keys already in the cache)
  float scale = 0;       // 0 -> 1/sqrt(Dh)
  int64_t batch = 1;     // independent sequences stacked on dim 0 (the tiles of a vision pass)
};
// out[T, H, Dh] = softmax(q·kᵀ·scale + mask) · v with q [T, H, Dh], k/v [S, Hkv, Dh]; H % Hkv == 0
// and query head h reads kv head h / (H / Hkv) (GQA). k/v may be views (e.g. a KV cache prefix).
// Softmax in F32. With batch = B > 1, dim 0 of q/out holds B sequences of T/B rows and dim 0 of
// k/v B sequences of S/B rows; sequence b attends only to its own keys (one launch on a GPU).
void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p);

// Elementwise.
void gelu_erf(const Tensor& out, const Tensor& x);                       // x/2 · (1 + erf(x/√2))
void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up);  // silu(gate) · up
void add(const Tensor& out, const Tensor& a, const Tensor& b);           // a + b (same shape)
// out[r, c] = a[r, c] + s[c] · b[r, c]   (InternViT layer scale: h += ls ⊙ y)
void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b);

// Patch embedding: a stride = kernel = P convolution as one GEMM.
// pixels [T, 3, S, S], w [C, 3, P, P], b [C]  ->  out [T, (S/P)², C], patches in row-major order.
void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b);

// Pixel shuffle v2 (docs/MODEL.md §6) on a G×G grid (G = 32 for 448/14):
//   out[t, i*(G/2) + j, (2*dy + dx)*C + c] = in[t, (2i+dy)*G + (2j+dx), c]
// in [T, G*G, C] -> out [T, G*G/4, 4C].
void pixel_shuffle_v2(const Tensor& out, const Tensor& in);

// out[t, :] = table[ids[t], :]; ids I32/I64 [T], every id < V (checked).
void embedding(const Tensor& out, const Tensor& ids, const Tensor& table);

// dst[rows[k], :] = src[k, :] for k in [0, K); rows I64 [K] in range (checked).
void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src);

// Sampling over logits [V] (F32). Deterministic for a given (seed, step): the random draw is a
// counter-based function of both, so CPU and CUDA pick the same token from the same logits.
// Order (HF's): repetition penalty (also in greedy mode) -> greedy argmax (ties -> lowest id) or
// temperature -> top-k (ties with the k-th value kept) -> top-p (drop ascending cumulative prob
// <= 1 - top_p, keep >= 1) -> softmax -> draw. Banned ids and ids >= allowed_vocab never compete.
// The draw (ops/cpu/sample.cpp has the full recipe): with mix = splitmix64's finalizer
// (docs/CHECKPOINTS.md) and GOLDEN = 0x9E3779B97F4A7C15,
//   u = (mix(seed ^ mix((step + 1) * GOLDEN)) >> 40) * 2^-24;
// survivors ordered by probability descending (equal logits: lower id first), weights
// w_i = exp(l_i - max l) in float64; pick the first whose running float64 sum exceeds u * Σw.
struct SamplingParams {
  float temperature = 0;         // 0 = greedy (argmax; ties -> lowest id)
  int64_t top_k = 0;             // 0 = off
  float top_p = 1.0f;            // 1 = off
  float repetition_penalty = 1;  // HF semantics: logit > 0 ? logit / r : logit * r, for ids in history
  uint64_t seed = 0;
  int64_t allowed_vocab = -1;             // ids >= this are never sampled (padding rows); -1 = all
  std::span<const int64_t> banned = {};   // never sampled (e.g. <IMG_CONTEXT>)
  std::span<const int64_t> history = {};  // tokens seen so far, for the repetition penalty
};
int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step);

// Device memory the CUDA backend holds besides tensors (runtime/memory_plan.h counts it before a load):
// one cuBLASLt workspace per device, and per-op scratch buffers that are never smaller than
// kCudaScratchMinBytes (ops/cuda/context.h).
inline constexpr size_t kCudaLtWorkspaceBytes = size_t{32} << 20;  // cuBLASLt recommends >= 32 MiB on Hopper
inline constexpr size_t kCudaScratchMinBytes = size_t{1} << 20;

}  // namespace sailvl::ops
