// F32 GEMM with on-the-fly weight conversion, Goto/BLIS style, for AVX2 + FMA.
//
//   out[M, N] = x[M, K] · w[N, K]ᵀ       x, out F32 (activations); w BF16/F16/F32 (the checkpoint)
//                                        or q8/q4 codes + F16 scales (ops/quant.h)
//
// Why our own: the prefill and vision linears are compute-bound (2·M·N·K FLOPs against N·K weight
// bytes), so the kernel must run near the FMA units' peak. An AVX2 core retires two 8-lane FMAs a
// cycle = 32 FLOP/cycle; MKL's sgemm gets ~80 % of that. Converting BF16 weights to F32 first and
// calling a generic sgemm (what linear.cpp did with Eigen) costs a second pass over the weights and
// Eigen's kernel reaches ~55 %. Here the conversion is fused into the packing every fast GEMM
// does anyway, so the BF16 weights are read once per (column block, K block) and never copied whole.
//
// Blocking (the five loops around a register-tile micro-kernel):
//
//   for each column block jc of NC columns          (w rows jc..jc+NC; threads split the columns,
//                                                    or the rows of x when M > 2N: gemm_typed)
//     for each K block pc of KC                      (B~ = w[jc.., pc..]ᵀ packed: KC × NC F32, ~L3)
//       for each row block ic of MC rows of x        (A~ = x[ic.., pc..] packed: MC × KC F32, L2)
//         for each NR = 16 column strip jr of B~     (a KC × 16 strip, 16 KiB: stays in L1)
//           for each MR = 6 row strip ir of A~
//             micro-kernel: out[ir:ir+6, jr:jr+16] (+)= A~strip · B~strip   (KC rank-1 updates)
//
// Micro-kernel 6 × 16: 12 ymm accumulators (6 rows × 2 vectors of 8 columns), 2 ymm of B and 1
// broadcast of A per k: 15 of the 16 ymm registers. Each k step issues 12 FMAs against 2 loads + 6
// broadcasts, enough independent FMAs (12 ≥ 2 pipes × 5-cycle latency) to keep both pipes busy.
//
// Packed layouts (the micro-kernel reads both with unit stride):
//   A~ strip: [KC][6]   a[k·6 + r]  = x[ic+ir+r, pc+k]   (rows past M are zero)
//   B~ strip: [KC][16]  b[k·16 + j] = w[jc+jr+j, pc+k]   (rows past N are zero; BF16 → F32 here)
// Quantised weights are unpacked at the same place (pack_b_strip_quant): q8 codes widened and
// scaled, q4 nibbles shifted out of a broadcast 32-bit word, each 8 weights of a row exactly
// dequantize()'s values, then the same 8 × 8 transposes. The packing reads 1.06 (q8) or 0.56 (q4)
// bytes per weight instead of 2 and does a few more instructions per weight; it runs once per
// (column block, K block), so for prefill-sized M it is a small part of the time either way.
// Edge tiles (M or N not a multiple of 6 / 16) are computed in full into a stack tile and the valid
// part copied out, so the micro-kernel has one shape.
//
// Numerics: every output is Σ over K blocks of (Σ over k in the block of x·w), each block summed in
// k order in one F32 accumulator lane: the same bound as any F32 dot product, |err| <= K·u·Σ|x·w|.
#include "ops/cpu/gemm.h"

#ifdef SAILVL_CPU_AVX2

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace sailvl::ops::cpu {

namespace {

constexpr int64_t MR = 6, NR = 16;
constexpr int64_t KC = 256;   // K block: a 6 × 256 A strip (6 KiB) + a 256 × 16 B strip (16 KiB) fit L1
constexpr int64_t MC = 120;   // row block: 120 × 256 × 4 = 120 KiB of A~ stays in the 512 KiB L2
constexpr int64_t NC = 4096;  // column block: up to 256 × 4096 × 4 = 4 MiB of B~ per thread (L3)

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, AlignedFree>;

float* alloc_floats(int64_t n) {
  void* p = std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64));
  SAILVL_CHECK(p != nullptr, OutOfMemory, "gemm: cannot allocate ", n * 4, " bytes of packing buffer");
  return static_cast<float*>(p);
}

// Per-thread packing buffers, kept for the life of the (OpenMP worker) thread.
struct Scratch {
  Buffer a{alloc_floats(MC * KC)};
  Buffer b{alloc_floats(KC * NC)};
};

// ---- packing ----

// 8 weights of row `row` at column k as F32 (exact widening for BF16 and F16).
template <DType WT>
inline __m256 load_w8(const uint8_t* row, int64_t k) {
  if constexpr (WT == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + k));
    if constexpr (WT == DType::BF16)
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else
      return _mm256_cvtph_ps(h);
  }
}

template <DType WT>
inline float load_w1(const uint8_t* row, int64_t k) {
  if constexpr (WT == DType::F32)
    return reinterpret_cast<const float*>(row)[k];
  else if constexpr (WT == DType::BF16)
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
  else
    return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
}

// In-register transpose of an 8 × 8 F32 block: r[i] holds row i on entry, column i on exit.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// B~ strip: dst[k·16 + j] = w[n0 + j, k0 + k] for k < kc, j < 16 (j >= nr: 0).
// Full strips go 8 × 8 blocks at a time: load 8 weights from each of 8 rows, transpose, store.
template <DType WT>
void pack_b_strip(float* dst, const uint8_t* w, int64_t w_row_bytes, int64_t n0, int64_t nr, int64_t k0, int64_t kc) {
  const uint8_t* rows[NR];
  for (int64_t j = 0; j < NR; ++j) rows[j] = w + (n0 + std::min(j, nr - 1)) * w_row_bytes;
  int64_t k = 0;
  if (nr == NR) {
    for (; k + 8 <= kc; k += 8)
      for (int64_t half = 0; half < 2; ++half) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) r[j] = load_w8<WT>(rows[half * 8 + j], k0 + k);
        transpose8(r);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(dst + (k + i) * NR + half * 8, r[i]);
      }
  }
  for (; k < kc; ++k)
    for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = j < nr ? load_w1<WT>(rows[j], k0 + k) : 0.0f;
}

// The same strip from a [K, N] matrix (out = x · w): dst[k·16 + j] = w[k0 + k, n0 + j].
template <DType WT>
void pack_b_strip_kn(float* dst, const uint8_t* w, int64_t w_row_bytes, int64_t n0, int64_t nr, int64_t k0,
                     int64_t kc) {
  for (int64_t k = 0; k < kc; ++k) {
    const uint8_t* row = w + (k0 + k) * w_row_bytes;
    float* d = dst + k * NR;
    if (nr == NR) {
      _mm256_store_ps(d, load_w8<WT>(row, n0));
      _mm256_store_ps(d + 8, load_w8<WT>(row, n0 + 8));
    } else {
      for (int64_t j = 0; j < NR; ++j) d[j] = j < nr ? load_w1<WT>(row, n0 + j) : 0.0f;
    }
  }
}

// 8 weights w'[n, k..k+8) of a quantised matrix as F32, exactly as dequantize() gives them (k is a
// multiple of 8, so the 8 share one group). q8: s · c. q4: the 4 bytes hold weight k + i in bits
// 4i..4i+3 (the low nibble of byte i/2 for even i), so one broadcast and a variable shift put weight
// k + i in lane i; w' = fma(u, s, o) with o = -8·s (exact) or the zero z of the asymmetric variant.
template <QuantType QT>
inline __m256 load_q8(const QuantRows& w, int64_t n, int64_t k) {
  const float s = _cvtsh_ss(w.scale[n * w.scale_stride + k / w.group]);
  const uint8_t* row = w.codes + n * w.code_stride;
  if constexpr (QT == QuantType::Q8) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(s));
  } else {
    uint32_t bits;
    std::memcpy(&bits, row + k / 2, 4);
    const __m256i u = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(bits)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
        _mm256_set1_epi32(0xf));
    const float o = w.zero ? _cvtsh_ss(w.zero[n * w.scale_stride + k / w.group]) : -8.0f * s;
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(u), _mm256_set1_ps(s), _mm256_set1_ps(o));
  }
}

// B~ strip of a quantised matrix: dst[k·16 + j] = w'[n0 + j, k0 + k] (j >= nr: 0). k0 and kc are
// multiples of 32 (K and the group are, and so is KC), so the 8 × 8 transposes of pack_b_strip apply.
template <QuantType QT>
void pack_b_strip_quant(float* dst, const QuantRows& w, int64_t n0, int64_t nr, int64_t k0, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 8)
    for (int64_t half = 0; half < 2; ++half) {
      __m256 r[8];
      for (int64_t j = 0; j < 8; ++j)
        r[j] = half * 8 + j < nr ? load_q8<QT>(w, n0 + half * 8 + j, k0 + k) : _mm256_setzero_ps();
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(dst + (k + i) * NR + half * 8, r[i]);
    }
}

// A~ strip: dst[k·6 + r] = x[m0 + r, k0 + k] (r >= mr: 0).
void pack_a_strip(float* dst, const RowMat<const float>& x, int64_t m0, int64_t mr, int64_t k0, int64_t kc) {
  if (mr == MR) {
    const float* r0 = x.row(m0) + k0;
    const int64_t s = x.stride;
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * MR;
      d[0] = r0[k];
      d[1] = r0[s + k];
      d[2] = r0[2 * s + k];
      d[3] = r0[3 * s + k];
      d[4] = r0[4 * s + k];
      d[5] = r0[5 * s + k];
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t r = 0; r < MR; ++r) dst[k * MR + r] = r < mr ? x.row(m0 + r)[k0 + k] : 0.0f;
}

// ---- micro-kernel ----

// c[6 × 16] (ldc) = (accumulate ? c : 0) + Σ_k a[k·6 + r] · b[k·16 + j].
inline void kernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int64_t r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    if (accumulate) {
      _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), acc[r][0]));
      _mm256_storeu_ps(cr + 8, _mm256_add_ps(_mm256_loadu_ps(cr + 8), acc[r][1]));
    } else {
      _mm256_storeu_ps(cr, acc[r][0]);
      _mm256_storeu_ps(cr + 8, acc[r][1]);
    }
  }
}

// One column block [n0, n0 + nc) of out, all rows, all of K. pack_b(dst, n, nr, k0, kc) packs the
// B~ strip of weight rows [n, n + nr) and columns [k0, k0 + kc) (pack_b_strip and its kin).
template <class PackB>
void gemm_block(const RowMat<const float>& x, const PackB& pack_b, const RowMat<float>& out, int64_t n0, int64_t nc,
                int64_t K, Scratch& s) {
  const int64_t M = x.rows;
  const int64_t strips = (nc + NR - 1) / NR;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool accumulate = k0 > 0;
    for (int64_t j = 0; j < strips; ++j)
      pack_b(s.b.get() + j * kc * NR, n0 + j * NR, std::min(NR, nc - j * NR), k0, kc);
    for (int64_t m0 = 0; m0 < M; m0 += MC) {
      const int64_t mc = std::min(MC, M - m0);
      for (int64_t i = 0; i * MR < mc; ++i)
        pack_a_strip(s.a.get() + i * kc * MR, x, m0 + i * MR, std::min(MR, mc - i * MR), k0, kc);
      for (int64_t j = 0; j < strips; ++j) {
        const int64_t nr = std::min(NR, nc - j * NR);
        const float* bs = s.b.get() + j * kc * NR;
        for (int64_t i = 0; i * MR < mc; ++i) {
          const int64_t mr = std::min(MR, mc - i * MR);
          const float* as = s.a.get() + i * kc * MR;
          float* c = out.row(m0 + i * MR) + n0 + j * NR;
          if (mr == MR && nr == NR) {
            kernel_6x16(kc, as, bs, c, out.stride, accumulate);
          } else {  // edge tile: full tile on the stack, copy out the valid mr × nr part
            alignas(32) float tile[MR * NR];
            kernel_6x16(kc, as, bs, tile, NR, false);
            for (int64_t r = 0; r < mr; ++r)
              for (int64_t q = 0; q < nr; ++q)
                c[r * out.stride + q] = accumulate ? c[r * out.stride + q] + tile[r * NR + q] : tile[r * NR + q];
          }
        }
      }
    }
  }
}

Scratch& thread_scratch() {
  static thread_local Scratch scratch;
  return scratch;
}

template <class PackB>
void gemm_typed(const RowMat<const float>& x, const PackB& pack_b, const RowMat<float>& out, int64_t N, int64_t K) {
  const int64_t M = x.rows;
  const int64_t nthreads = omp_get_max_threads();
  // How to share the work between threads. Each thread packs what it reads, so one operand is
  // packed by every thread: split the columns (N) and every thread packs all of x (M·K floats), or
  // split the rows (M) and every thread packs all of w (N·K weights, about twice the cost per
  // element: widening + transposing). Split the rows when M > 2N (the ViT's 7175-row GEMMs
  // against 1024-4096 columns, the 256-column K/V projections), else the columns.
  if (nthreads > 1 && M > 2 * N && M >= nthreads * MR) {
    const int64_t per = ((M + nthreads - 1) / nthreads + MR - 1) / MR * MR;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < nthreads; ++t) {
      const int64_t m0 = t * per, rows = std::min(per, M - m0);
      if (rows <= 0) continue;
      const RowMat<const float> xs{x.row(m0), rows, x.cols, x.stride};
      const RowMat<float> os{out.row(m0), rows, out.cols, out.stride};
      for (int64_t n0 = 0; n0 < N; n0 += NC) gemm_block(xs, pack_b, os, n0, std::min(NC, N - n0), K, thread_scratch());
    }
    return;
  }
  // Column blocks: one per thread (each thread then packs all of x once per K block), more only
  // when a thread's share exceeds NC columns. Every block costs the same, so a static split is even.
  const int64_t per_thread = (N + nthreads - 1) / nthreads;
  const int64_t chunks = nthreads * ((per_thread + NC - 1) / NC);
  const int64_t nc = std::max<int64_t>(NR, ((N + chunks - 1) / chunks + NR - 1) / NR * NR);
  const int64_t blocks = (N + nc - 1) / nc;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t bi = 0; bi < blocks; ++bi) {
    const int64_t n0 = bi * nc;
    gemm_block(x, pack_b, out, n0, std::min(nc, N - n0), K, thread_scratch());
  }
}

template <DType WT>
void gemm_float(const RowMat<const float>& x, const uint8_t* w, int64_t w_row_bytes, const RowMat<float>& out,
                int64_t N, int64_t K) {
  const auto pack = [&](float* dst, int64_t n, int64_t nr, int64_t k0, int64_t kc) {
    pack_b_strip<WT>(dst, w, w_row_bytes, n, nr, k0, kc);
  };
  gemm_typed(x, pack, out, N, K);
}

}  // namespace

void gemm_xwt(const RowMat<const float>& x, const uint8_t* w, int64_t w_row_bytes, DType wt, const RowMat<float>& out,
              int64_t N, int64_t K) {
  switch (wt) {
    case DType::BF16: return gemm_float<DType::BF16>(x, w, w_row_bytes, out, N, K);
    case DType::F16: return gemm_float<DType::F16>(x, w, w_row_bytes, out, N, K);
    default: return gemm_float<DType::F32>(x, w, w_row_bytes, out, N, K);
  }
}

void gemm_xwt_quant(const RowMat<const float>& x, const QuantRows& w, const RowMat<float>& out) {
  const auto pack = [&](float* dst, int64_t n, int64_t nr, int64_t k0, int64_t kc) {
    if (w.type == QuantType::Q8)
      pack_b_strip_quant<QuantType::Q8>(dst, w, n, nr, k0, kc);
    else
      pack_b_strip_quant<QuantType::Q4>(dst, w, n, nr, k0, kc);
  };
  gemm_typed(x, pack, out, w.N, w.K);
}

void gemm_f32_serial(const RowMat<const float>& x, const RowMat<const float>& w, bool transposed,
                     const RowMat<float>& out) {
  const auto* wp = reinterpret_cast<const uint8_t*>(w.p);
  const int64_t rb = w.stride * 4;
  const int64_t N = transposed ? w.rows : w.cols, K = x.cols;
  for (int64_t n0 = 0; n0 < N; n0 += NC) {
    const int64_t nc = std::min(NC, N - n0);
    if (transposed)
      gemm_block(
          x,
          [&](float* dst, int64_t n, int64_t nr, int64_t k0, int64_t kc) {
            pack_b_strip<DType::F32>(dst, wp, rb, n, nr, k0, kc);
          },
          out, n0, nc, K, thread_scratch());
    else
      gemm_block(
          x,
          [&](float* dst, int64_t n, int64_t nr, int64_t k0, int64_t kc) {
            pack_b_strip_kn<DType::F32>(dst, wp, rb, n, nr, k0, kc);
          },
          out, n0, nc, K, thread_scratch());
  }
}

}  // namespace sailvl::ops::cpu

#endif  // SAILVL_CPU_AVX2
