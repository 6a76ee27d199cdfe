// Attention: out[T, H, Dh] = softmax(q·kᵀ·scale + mask) · v, q [T, H, Dh], k/v [S, Hkv, Dh], GQA
// (query head h reads kv head h / (H/Hkv)), optional causal mask with q_offset (key j visible to
// query i iff j <= q_offset + i). BF16 in and out, F32 scores, softmax and accumulation.
// Head dims 64 (InternViT) and 128 (AIMv2, Qwen2) are instantiated; nothing else is compiled.
//
// Prefill (T > 1): attn_prefill_mma_kernel (below; mma.sync, everything in registers). The first
// version, a WMMA kernel, lives in ops/cuda/dev/attention_wmma.cu as a cross-check for tests and
// benchmarks; they swap it in through set_prefill_override (ops/cuda/attention_detail.cuh).
// Decode (T == 1): flash-decoding. Grid = (splits, Hkv): a block takes a contiguous chunk of keys
//   for one KV head and serves all G = H/Hkv query heads of its group (G <= 8), so each K/V row is
//   read from DRAM once for the whole group. Dh/8 lanes own one key (16-byte loads of K and V);
//   each lane group keeps an online-softmax state (m, l, o[8]) per query head in registers; the
//   groups of the block merge through shared memory, and each block writes an unnormalised partial
//   (m, l, o[Dh]) per head in F32. combine_kernel merges the splits: O = Σ o_s·e^(m_s-M) / Σ l_s·e^(m_s-M).
//   splits ≈ 2·SMs / Hkv, at least 64 keys each. Bytes: 2·S·Hkv·Dh·2 (K and V) — 1 MiB per layer at
//   S = 2048 for Qwen2.5-1.5B, ≈ 0.3 µs at 3.35 TB/s: launch-bound.
// Preconditions (checked, ErrorKind::Internal): q/k/v/out BF16, 3-D, last dim contiguous, token and
// head strides multiples of 8 elements and 16-byte aligned bases (true for linear outputs, their
// slices and KV-cache prefixes); Dh ∈ {64, 128}; H % Hkv == 0; out [T, H, Dh].
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "ops/cuda/attention_detail.cuh"
#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"

namespace sailvl::ops::cuda {

namespace {

using namespace attention_detail;

// ---------------------------------------------------------------- prefill (mma.sync, FA2-style)
//
// The prefill kernel. Same math as the first, WMMA kernel (ops/cuda/dev/attention_wmma.cu: P rounded
// to BF16, l sums the rounded P), but S, P and O never leave registers: S = Q·Kᵀ and O += P·V are PTX
// mma.sync.m16n8k16 (BF16 in, F32 accumulate), and the accumulator layout of S is exactly the
// A-operand layout of P, so P is packed to BF16 in place. Operands come from shared memory through
// ldmatrix (.trans for V); K/V tiles are double-buffered with cp.async so the next tile streams in
// while this one is multiplied. Block = 4 warps, 64 query rows (16 per warp), key tiles of 64.
// Fragment layout of m16n8k16 (g = lane / 4, c = 2·(lane % 4)):
//   A 16×16 row-major: a0 = (g, c..c+1), a1 = (g+8, c..), a2 = (g, c+8..), a3 = (g+8, c+8..)
//   B 16×8  col-major: b0 = (k c..c+1, n g), b1 = (k c+8.., n g)
//   C 16×8  F32:       c0,c1 = (g, c..c+1), c2,c3 = (g+8, c..c+1)
// Rows are padded by 16 bytes so the 8 rows of an ldmatrix hit 8 different bank groups.
// Shared memory (Dh = 128): Q 17 KB + K 2×17 KB + V 2×17 KB = 85 KB (opt-in); Dh = 64: 45 KB.

template <int D>
struct Mma {
  static constexpr int kWarps = 4, BQ = 16 * kWarps, BK = 64, LD = D + 8;  // LD in BF16 elements
  static constexpr size_t kTile = size_t{BK} * LD * 2;                     // bytes of one K or V tile
  static constexpr size_t kQ = 0, kK = size_t{BQ} * LD * 2, kV = kK + 2 * kTile, kBytes = kV + 2 * kTile;
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  // src-size 0 writes 16 zero bytes and reads nothing (rows past T or S).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi, float& sum) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  const float2 f = __bfloat1622float2(v);
  sum += f.x + f.y;  // l sums the rounded weights
  return *reinterpret_cast<const uint32_t*>(&v);
}

// rows [0, rows) of D BF16 from src (row stride `stride`) into shared memory (row stride LD),
// zero-filling rows >= valid; cp.async, 16 bytes per thread per step.
template <int D, int LD>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* src, int64_t stride, int rows, int64_t valid) {
  constexpr int kChunks = D / 8;
  for (int e = threadIdx.x; e < rows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = e % kChunks;
    const bool ok = r < valid;
    cp_async16(dst + r * LD + c * 8, ok ? src + r * stride + c * 8 : src, ok);
  }
}

template <int D>
__global__ void __launch_bounds__(128) attn_prefill_mma_kernel(AttnArgs a) {
  using C = Mma<D>;
  constexpr int LD = C::LD, NT = C::BK / 8, DT = D / 8;  // S n-tiles, O n-tiles per warp
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem + C::kQ);
  bf16* Ks = reinterpret_cast<bf16*>(smem + C::kK);
  bf16* Vs = reinterpret_cast<bf16*>(smem + C::kV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = 2 * (lane & 3);
  select_sequence(a);

  // Heaviest causal blocks (the last query rows) first.
  const int64_t qblk = a.causal ? int64_t{gridDim.x} - 1 - blockIdx.x : int64_t{blockIdx.x};
  const int64_t h = blockIdx.y, kvh = h / (a.H / a.Hkv);
  const int64_t q0 = qblk * C::BQ;
  const bf16* kb = a.k + kvh * a.ks1;
  const bf16* vb = a.v + kvh * a.vs1;

  int64_t k_end = a.S;
  if (a.causal) k_end = std::min<int64_t>(a.S, a.q_offset + std::min<int64_t>(a.T, q0 + C::BQ));
  const int64_t n_tiles = (k_end + C::BK - 1) / C::BK;

  load_tile_async<D, LD>(Qs, a.q + q0 * a.qs0 + h * a.qs1, a.qs0, C::BQ, a.T - q0);
  if (n_tiles > 0) {
    load_tile_async<D, LD>(Ks, kb, a.ks0, C::BK, a.S);
    load_tile_async<D, LD>(Vs, vb, a.vs0, C::BK, a.S);
  }
  cp_async_commit();

  uint32_t qf[D / 16][4];
  float o[DT][4];
#pragma unroll
  for (int j = 0; j < DT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows g and g + 8 of this warp
  const float scale_log2 = a.scale * 1.4426950408889634f;
  const int64_t row0 = q0 + warp * 16 + g, row1 = row0 + 8;  // absolute query rows

  for (int64_t t = 0; t < n_tiles; ++t) {
    const int64_t k0 = t * C::BK;
    const int buf = static_cast<int>(t & 1);
    if (t + 1 < n_tiles) {  // stream the next tile into the other buffer
      const int64_t k1 = k0 + C::BK;
      load_tile_async<D, LD>(Ks + (buf ^ 1) * C::BK * LD, kb + k1 * a.ks0, a.ks0, C::BK, a.S - k1);
      load_tile_async<D, LD>(Vs + (buf ^ 1) * C::BK * LD, vb + k1 * a.vs0, a.vs0, C::BK, a.S - k1);
      cp_async_commit();
      cp_async_wait<1>();  // everything but the newest group: Q and tile t have landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        ldmatrix_x4(qf[kk], Qs + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
    }
    const bf16* Kt = Ks + buf * C::BK * LD;
    const bf16* Vt = Vs + buf * C::BK * LD;

    // S[16, BK] = Q_w · K_tileᵀ
    float s[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        uint32_t b[4];  // keys n2·16 + [0, 8) and [8, 16), dims kk·16 + [0, 8) and [8, 16)
        ldmatrix_x4(b, Kt + (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
        mma_16816(s[2 * n2], qf[kk], b[0], b[1]);
        mma_16816(s[2 * n2 + 1], qf[kk], b[2], b[3]);
      }
    }

    // Scale into log2 units; mask keys past S and (causal) past each row's position.
    const bool need_mask = k0 + C::BK > a.S || (a.causal && k0 + C::BK - 1 > a.q_offset + q0);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * scale_log2;
        if (need_mask) {
          const int64_t kj = k0 + j * 8 + c2 + (e & 1);
          const int64_t qi = e < 2 ? row0 : row1;
          if (kj >= a.S || (a.causal && kj > a.q_offset + qi)) x = -INFINITY;
        }
        s[j][e] = x;
      }
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // A row with nothing visible yet keeps m = -inf: subtract 0 instead so every p is exp2(-inf) = 0.
    const float ms0 = mn0 == -INFINITY ? 0.f : mn0, ms1 = mn1 == -INFINITY ? 0.f : mn1;
    const float al0 = exp2f(m0 - ms0), al1 = exp2f(m1 - ms1);  // m = -inf -> 0 (O, l are still 0)
    m0 = mn0;
    m1 = mn1;
    l0 *= al0;
    l1 *= al1;
#pragma unroll
    for (int j = 0; j < DT; ++j) {
      o[j][0] *= al0;
      o[j][1] *= al0;
      o[j][2] *= al1;
      o[j][3] *= al1;
    }

    // O += P · V_tile, P packed to BF16 straight from the S accumulators.
#pragma unroll
    for (int kk = 0; kk < C::BK / 16; ++kk) {
      uint32_t p[4];
      p[0] = pack_bf16(exp2f(s[2 * kk][0] - ms0), exp2f(s[2 * kk][1] - ms0), l0);
      p[1] = pack_bf16(exp2f(s[2 * kk][2] - ms1), exp2f(s[2 * kk][3] - ms1), l1);
      p[2] = pack_bf16(exp2f(s[2 * kk + 1][0] - ms0), exp2f(s[2 * kk + 1][1] - ms0), l0);
      p[3] = pack_bf16(exp2f(s[2 * kk + 1][2] - ms1), exp2f(s[2 * kk + 1][3] - ms1), l1);
#pragma unroll
      for (int d2 = 0; d2 < D / 16; ++d2) {
        uint32_t b[4];  // keys kk·16 + [0, 8) and [8, 16), dims d2·16 + [0, 8) and [8, 16)
        ldmatrix_x4_trans(b, Vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + d2 * 16 + (lane >> 4) * 8);
        mma_16816(o[2 * d2], p, b[0], b[1]);
        mma_16816(o[2 * d2 + 1], p, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is refilled two iterations from now
  }

  // The four lanes of a quad hold partial sums of the same rows.
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
  for (int j = 0; j < DT; ++j) {
    if (row0 < a.T)
      *reinterpret_cast<__nv_bfloat162*>(a.out + row0 * a.os0 + h * a.os1 + j * 8 + c2) =
          __floats2bfloat162_rn(o[j][0] * inv0, o[j][1] * inv0);
    if (row1 < a.T)
      *reinterpret_cast<__nv_bfloat162*>(a.out + row1 * a.os0 + h * a.os1 + j * 8 + c2) =
          __floats2bfloat162_rn(o[j][2] * inv1, o[j][3] * inv1);
  }
}

// ---------------------------------------------------------------- decode (flash-decoding)

constexpr int kDecodeThreads = 128;
constexpr int kMaxGroup = 8;

struct DecodeArgs {
  AttnArgs a;
  int64_t n_keys;  // visible keys
  int64_t chunk;   // keys per split
  float* part;     // [splits, H, D + 2]: o[D], m, l
};

__device__ __forceinline__ void unpack8(const uint4& u, float f[8]) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __bfloat1622float2(p[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

template <int D>
__global__ void __launch_bounds__(kDecodeThreads) attn_decode_kernel(DecodeArgs da) {
  constexpr int LPK = D / 8;                // lanes per key
  constexpr int NG = kDecodeThreads / LPK;  // lane groups per block
  __shared__ float sm_m[NG][kMaxGroup], sm_l[NG][kMaxGroup];
  __shared__ float sm_o[NG][kMaxGroup][D];
  const AttnArgs& a = da.a;
  const int G = static_cast<int>(a.H / a.Hkv);
  const int64_t kvh = blockIdx.y, split = blockIdx.x;
  const int grp = threadIdx.x / LPK, sub = threadIdx.x % LPK;
  const int64_t s0 = split * da.chunk, s1 = std::min<int64_t>(da.n_keys, s0 + da.chunk);

  float q[kMaxGroup][8], o[kMaxGroup][8], m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) o[g][e] = 0.f;
    if (g < G) {
      const uint4 u = *reinterpret_cast<const uint4*>(a.q + (kvh * G + g) * a.qs1 + sub * 8);
      unpack8(u, q[g]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[g][e] *= a.scale;
    }
  }
  // Every lane of a warp runs the same number of steps (the shuffles below need the whole warp);
  // a lane group whose key is past the chunk computes nothing and keeps its state.
  for (int64_t jb = s0; jb < s1; jb += NG) {
    const int64_t j = jb + grp;
    const bool valid = j < s1;
    uint4 ku = make_uint4(0, 0, 0, 0), vu = make_uint4(0, 0, 0, 0);
    if (valid) {
      ku = *reinterpret_cast<const uint4*>(a.k + j * a.ks0 + kvh * a.ks1 + sub * 8);
      vu = *reinterpret_cast<const uint4*>(a.v + j * a.vs0 + kvh * a.vs1 + sub * 8);
    }
    float kf[8], vf[8];
    unpack8(ku, kf);
    unpack8(vu, vf);
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        float s = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(q[g][e], kf[e], s);
#pragma unroll
        for (int off = LPK / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (valid) {
          const float m_new = fmaxf(m[g], s);
          const float alpha = expf(m[g] - m_new), p = expf(s - m_new);
          l[g] = l[g] * alpha + p;
#pragma unroll
          for (int e = 0; e < 8; ++e) o[g][e] = fmaf(o[g][e], alpha, p * vf[e]);
          m[g] = m_new;
        }
      }
    }
  }
  // Merge the lane groups of the block.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < G) {
      if (sub == 0) {
        sm_m[grp][g] = m[g];
        sm_l[grp][g] = l[g];
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) sm_o[grp][g][sub * 8 + e] = o[g][e];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * D; e += blockDim.x) {
    const int g = e / D, d = e % D;
    float M = -INFINITY;
    for (int i = 0; i < NG; ++i) M = fmaxf(M, sm_m[i][g]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
      for (int i = 0; i < NG; ++i) {
        const float w = expf(sm_m[i][g] - M);
        L += sm_l[i][g] * w;
        O += sm_o[i][g][d] * w;
      }
    }
    float* dst = da.part + (split * a.H + kvh * G + g) * (D + 2);
    dst[d] = O;
    if (d == 0) {
      dst[D] = M;
      dst[D + 1] = L;
    }
  }
}

template <int D>
__global__ void attn_combine_kernel(const float* part, int64_t splits, int64_t H, bf16* out, int64_t os1) {
  const int64_t h = blockIdx.x;
  float M = -INFINITY;
  for (int64_t s = 0; s < splits; ++s) M = fmaxf(M, part[(s * H + h) * (D + 2) + D]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
      for (int64_t s = 0; s < splits; ++s) {
        const float* p = part + (s * H + h) * (D + 2);
        const float w = expf(p[D] - M);
        L += p[D + 1] * w;
        O += p[d] * w;
      }
    }
    out[h * os1 + d] = __float2bfloat16_rn(L > 0.f ? O / L : 0.f);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int D>
void launch_decode(const AttnArgs& a, Context& ctx) {
  DecodeArgs da{};
  da.a = a;
  da.n_keys = a.causal ? std::min<int64_t>(a.S, a.q_offset + 1) : a.S;
  const int64_t want = std::max<int64_t>(1, (2 * int64_t{ctx.sm_count()} + a.Hkv - 1) / a.Hkv);
  const int64_t by_len = std::max<int64_t>(1, (da.n_keys + 63) / 64);
  const int64_t splits = std::min(want, by_len);
  da.chunk = std::max<int64_t>(1, (da.n_keys + splits - 1) / splits);
  SAILVL_CHECK(a.Hkv <= 65535, Internal, "attention: too many KV heads (", a.Hkv, ")");
  da.part = static_cast<float*>(
      ctx.scratch(Context::Slot::AttnPartial, static_cast<size_t>(splits * a.H * (D + 2)) * sizeof(float)));
  attn_decode_kernel<D>
      <<<dim3(static_cast<unsigned>(splits), static_cast<unsigned>(a.Hkv)), kDecodeThreads, 0, ctx.stream()>>>(da);
  CUDA_CHECK_LAUNCH();
  attn_combine_kernel<D><<<static_cast<unsigned>(a.H), D, 0, ctx.stream()>>>(da.part, splits, a.H, a.out, a.os1);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  constexpr const char* op = "attention";
  for (const Tensor* t : {&out, &q, &k, &v})
    SAILVL_CHECK(t->dtype() == DType::BF16 && t->dim() == 3 && t->stride(2) == 1, Internal, op,
                 ": CUDA attention takes BF16 [*, heads, Dh] tensors with a contiguous last dim, got ", t->describe());
  SAILVL_CHECK(p.batch >= 1 && q.size(0) % p.batch == 0 && k.size(0) % p.batch == 0, Internal, op, ": batch ", p.batch,
               " does not divide q ", q.describe(), " and k ", k.describe());
  const int64_t T = q.size(0) / p.batch, H = q.size(1), D = q.size(2), S = k.size(0) / p.batch, Hkv = k.size(1);
  SAILVL_CHECK(D == 64 || D == 128, Internal, op, ": head dim ", D, " not compiled (64 and 128 are)");
  SAILVL_CHECK(k.size(2) == D && v.size(0) == S * p.batch && v.size(1) == Hkv && v.size(2) == D, Internal, op, ": k ",
               k.describe(), " and v ", v.describe(), " disagree");
  SAILVL_CHECK(Hkv > 0 && H % Hkv == 0, Internal, op, ": H = ", H, " is not a multiple of Hkv = ", Hkv);
  SAILVL_CHECK(out.size(0) == q.size(0) && out.size(1) == H && out.size(2) == D, Internal, op, ": out ", out.describe(),
               " must be [", q.size(0), ", ", H, ", ", D, "]");
  SAILVL_CHECK(p.q_offset >= 0, Internal, op, ": negative q_offset");
  for (const Tensor* t : {&out, &q, &k, &v})
    SAILVL_CHECK(aligned16(t->raw_data()) && t->stride(0) % 8 == 0 && t->stride(1) % 8 == 0, Internal, op, ": ",
                 t->describe(), " needs 16-byte aligned rows (strides multiples of 8 elements)");
  if (T == 0) return;
  AttnArgs a{};
  a.q = q.data<bf16>();
  a.k = k.data<bf16>();
  a.v = v.data<bf16>();
  a.out = out.data<bf16>();
  a.qs0 = q.stride(0);
  a.qs1 = q.stride(1);
  a.ks0 = k.stride(0);
  a.ks1 = k.stride(1);
  a.vs0 = v.stride(0);
  a.vs1 = v.stride(1);
  a.os0 = out.stride(0);
  a.os1 = out.stride(1);
  a.T = T;
  a.S = S;
  a.H = H;
  a.Hkv = Hkv;
  a.q_offset = p.q_offset;
  a.causal = p.causal ? 1 : 0;
  a.scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(D));
  auto& ctx = Context::get(out.device().index);
  const bool decode = T == 1 && H / Hkv <= kMaxGroup && p.batch == 1;
  if (decode) {
    if (D == 64)
      launch_decode<64>(a, ctx);
    else
      launch_decode<128>(a, ctx);
  } else if (const PrefillOverride f = prefill_override()) {
    f(a, D, p.batch, ctx);
  } else {
    if (D == 64)
      launch_prefill<Mma<64>>(attn_prefill_mma_kernel<64>, a, p.batch, ctx);
    else
      launch_prefill<Mma<128>>(attn_prefill_mma_kernel<128>, a, p.batch, ctx);
  }
}

namespace attention_detail {
namespace {
std::atomic<PrefillOverride> g_prefill_override{nullptr};
}
PrefillOverride prefill_override() { return g_prefill_override.load(std::memory_order_relaxed); }
void set_prefill_override(PrefillOverride f) { g_prefill_override.store(f, std::memory_order_relaxed); }
}  // namespace attention_detail

}  // namespace sailvl::ops::cuda
