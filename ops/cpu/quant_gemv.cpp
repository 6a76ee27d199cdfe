// Decode GEMV for quantised weights: out[m, n] = Σ_k x[m, k] · w'[n, k], M = 1..4 rows of F32 x,
// w' the q8 / q4 weights of ops/quant.h (docs/QUANTIZATION.md), read in their stored layout.
//
// Memory-bound like the BF16 GEMV (linear.cpp): every code and scale byte is read once per call, so
// the figure of merit is (code + scale bytes) / s against the bandwidth probes. The work per byte is
// higher than for BF16 (widen, convert, scale), so the kernels spend as few instructions per weight
// as they can:
//
//   * Exact weights. The kernels form w' = s · c (q8), s · (u - 8) (q4) or s · u + z (asymmetric q4
//     study variant) in F32 and multiply it by x with FMAs: s · c is exact (an 11-bit F16 significand
//     times a code of <= 8 bits), so the only difference from "dequantize(), then an F32 dot" is the
//     order of the F32 sums (|err| <= K·2^-24·Σ|w'||x| for the symmetric formats; the asymmetric
//     variant rounds s·u + z once, the value dequantize() gives).
//   * q4, permuted activations. A 32-weight chunk is 16 bytes; widening them to 32-bit lanes gives
//     the even weights in the low nibbles and the odd ones in the high nibbles. Instead of
//     interleaving the weights, x is permuted once per call to the same order:
//       xp[c + j] = x[c + 2j],  xp[c + 16 + j] = x[c + 2j + 1]      (j < 16, c a multiple of 32)
//     (M·K floats, against N·K/2 code bytes: free).
//   * AVX-512 (runtime dispatch, [[gnu::target]] functions; __builtin_cpu_supports picks them):
//     q4: vpmovzxbd widens 16 code bytes to 16 lanes; vpermps with a 16-entry table
//     t = s·(i - 8) (or s·i + z), rebuilt once per group, maps the low nibble of every lane to its
//     weight (vpermps reads only the low 4 bits of an index), a 4-bit shift and a second vpermps do
//     the high nibbles: per 32 weights 1 widen + 2 permutes + 1 shift + 2 FMAs (+ the table
//     multiply once per block), no int→float conversion.
//     q8: vpmovsxbd + vcvtdq2ps + vmulps by s, then the FMAs; 16 weights per instruction.
//   * AVX2 + FMA (the baseline): q8 as above with 8 lanes; q4: vpmovzxbd of 8 bytes, vpand / vpsrld
//     split the nibbles, vcvtdq2ps, then w' = fma(u, s, o) with o = -8·s (exact: s·u and 8·s are
//     exact and so is their sum) or o = z.
//   * Scales: F16 per (row, group), converted to F32 16 groups at a time into a small stack buffer
//     per block of rows (vcvtph2ps), then broadcast from memory.
//   * Scalar (builds without AVX2, and a tested twin): dequantise each weight, F32 multiply-add.
//
// Parallel plan (as the BF16 GEMV): OpenMP threads take contiguous ranges of output rows (static
// schedule), R rows at a time (AVX-512: R = 8/4/4/2 for M = 1/2/3/4, AVX2: 4/2/2/2) so that each
// chunk of x is loaded once for R rows; the rows past the last full block run with R = 1. The R
// rows of a block are adjacent in memory, and while a block runs the kernel prefetches the next
// one in step (prefetch_next) and each row's scales 64 bytes ahead: the hardware prefetchers alone
// left the start of every block to demand misses, which halved the speed of short rows.
// Preconditions (quant_rows, ErrorKind::Internal): codes I8 [N, K] / U8 [N, K/2] and F16 scales
// [N, K/G] with contiguous rows, G a positive multiple of 32, K % G == 0.
#include "ops/cpu/quant_gemv.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace sailvl::ops::cpu {

namespace {

constexpr int64_t kChunk = 32;  // weights per inner step: 16 code bytes of q4, 32 of q8

// A kernel: rows [n, n + R) of out for M rows of x (row m at x + m * xs; q4 vector kernels get the
// permuted xp).
using RowsFn = void (*)(const QuantRows& w, const float* x, int64_t xs, const RowMat<float>& o, int64_t n);

// ---- scalar (and the reference order of the nibbles) ----

template <int M, int R>
void rows_scalar(const QuantRows& w, const float* x, int64_t xs, const RowMat<float>& o, int64_t n) {
  const int64_t K = w.K, G = w.group;
  float acc[M][R] = {};
  for (int r = 0; r < R; ++r) {
    const uint8_t* c = w.codes + (n + r) * w.code_stride;
    const uint16_t* sc = w.scale + (n + r) * w.scale_stride;
    const uint16_t* zc = w.zero ? w.zero + (n + r) * w.scale_stride : nullptr;
    for (int64_t g = 0; g < K / G; ++g) {
      const float s = f16_to_f32(sc[g]);
      const float z = zc ? f16_to_f32(zc[g]) : 0.0f;
      for (int64_t k = g * G; k < (g + 1) * G; ++k) {
        float wv;
        if (w.type == QuantType::Q8) {
          wv = s * static_cast<float>(static_cast<int8_t>(c[k]));
        } else {
          const float u = static_cast<float>(k % 2 == 0 ? c[k / 2] & 0xf : c[k / 2] >> 4);
          wv = zc ? std::fma(s, u, z) : s * (u - 8.0f);
        }
        for (int m = 0; m < M; ++m) acc[m][r] += wv * x[m * xs + k];
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = acc[m][r];
}

#ifdef SAILVL_CPU_AVX2

constexpr int64_t kSBatch = 16;  // scales converted to F32 per batch

// F32 scales (and zeros) of R rows for the groups [g0, g0 + gn), gn <= kSBatch.
template <int R>
inline void load_scales(const QuantRows& w, int64_t n, int64_t g0, int64_t gn, float s[R][kSBatch],
                        float z[R][kSBatch]) {
  for (int r = 0; r < R; ++r) {
    const uint16_t* sc = w.scale + (n + r) * w.scale_stride + g0;
    const uint16_t* zc = w.zero ? w.zero + (n + r) * w.scale_stride + g0 : nullptr;
    // The scales of a long row are a slow stream (64 bytes per 1024 q4 weights): fetch ahead.
    _mm_prefetch(reinterpret_cast<const char*>(sc + 4 * kSBatch), _MM_HINT_T0);
    if (zc) _mm_prefetch(reinterpret_cast<const char*>(zc + 4 * kSBatch), _MM_HINT_T0);
    if (gn == kSBatch) {
      _mm256_storeu_ps(s[r], _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc))));
      _mm256_storeu_ps(s[r] + 8, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + 8))));
      if (zc) {
        _mm256_storeu_ps(z[r], _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zc))));
        _mm256_storeu_ps(z[r] + 8, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(zc + 8))));
      }
    } else {
      for (int64_t g = 0; g < gn; ++g) {
        s[r][g] = f16_to_f32(sc[g]);
        if (zc) z[r][g] = f16_to_f32(zc[g]);
      }
    }
  }
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Software prefetch of the next block of R rows, in step with this one: at the chunk of weights
// [k, k + 32) of this block, the bytes of the next block that lie as far into it (the rows of a
// block are adjacent, so a block is one contiguous range; CPB codes per byte). The hardware
// prefetchers alone leave a row block's first lines to demand misses, and with short rows (768
// bytes for q4 at K = 1536) that is a large part of the time. Blocks over 16 KiB (long rows) are
// prefetched to L2 only (prefetcht1), so the lines do not push the current block out of L1.
template <int R, int CPB>
inline void prefetch_next(const uint8_t* next, int64_t block_bytes, int64_t k) {
  constexpr int64_t bytes = R * kChunk / CPB;  // of the next block per chunk step
  const int64_t step = k / kChunk;
  if constexpr (bytes < 64) {
    if (step % (64 / bytes) != 0) return;
  }
  const bool far = block_bytes > (int64_t{16} << 10);
  for (int64_t off = 0; off < std::max<int64_t>(bytes, 1); off += 64) {
    const char* p = reinterpret_cast<const char*>(next + step * bytes + off);
    if (far)
      _mm_prefetch(p, _MM_HINT_T1);
    else
      _mm_prefetch(p, _MM_HINT_T0);
  }
}

// ---- AVX2 + FMA ----

template <int M, int R>
void q8_rows_avx2(const QuantRows& w, const float* x, int64_t xs, const RowMat<float>& o, int64_t n) {
  const int64_t K = w.K, G = w.group, ng = K / G;
  const int8_t* c[R];
  for (int r = 0; r < R; ++r) c[r] = reinterpret_cast<const int8_t*>(w.codes + (n + r) * w.code_stride);
  const uint8_t* next = w.codes + (n + R) * w.code_stride;
  const int64_t block_bytes = R * w.code_stride;
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  alignas(32) float s[R][kSBatch], z[R][kSBatch];
  for (int64_t g0 = 0; g0 < ng; g0 += kSBatch) {
    const int64_t gn = std::min(kSBatch, ng - g0);
    load_scales<R>(w, n, g0, gn, s, z);
    for (int64_t g = 0; g < gn; ++g) {
      const int64_t kb = (g0 + g) * G;
      for (int64_t k = kb; k < kb + G; k += 8) {
        if (k % kChunk == 0) prefetch_next<R, 1>(next, block_bytes, k);
        __m256 xv[M];
        for (int m = 0; m < M; ++m) xv[m] = _mm256_loadu_ps(x + m * xs + k);
        for (int r = 0; r < R; ++r) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c[r] + k));
          const __m256 wv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(s[r][g]));
          for (int m = 0; m < M; ++m) acc[m][r] = _mm256_fmadd_ps(wv, xv[m], acc[m][r]);
        }
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = hsum8(acc[m][r]);
}

template <int M, int R>
void q4_rows_avx2(const QuantRows& w, const float* xp, int64_t xs, const RowMat<float>& o, int64_t n) {
  const int64_t K = w.K, G = w.group, ng = K / G;
  const uint8_t* c[R];
  for (int r = 0; r < R; ++r) c[r] = w.codes + (n + r) * w.code_stride;
  const uint8_t* next = w.codes + (n + R) * w.code_stride;
  const int64_t block_bytes = R * w.code_stride;
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  const __m256i lo4 = _mm256_set1_epi32(0xf);
  alignas(32) float s[R][kSBatch], z[R][kSBatch];
  for (int64_t g0 = 0; g0 < ng; g0 += kSBatch) {
    const int64_t gn = std::min(kSBatch, ng - g0);
    load_scales<R>(w, n, g0, gn, s, z);
    for (int64_t g = 0; g < gn; ++g) {
      __m256 sv[R], ov[R];  // w' = u·s + o
      for (int r = 0; r < R; ++r) {
        sv[r] = _mm256_set1_ps(s[r][g]);
        ov[r] = w.zero ? _mm256_set1_ps(z[r][g]) : _mm256_set1_ps(-8.0f * s[r][g]);
      }
      const int64_t kb = (g0 + g) * G;
      for (int64_t k = kb; k < kb + G; k += kChunk) {
        prefetch_next<R, 2>(next, block_bytes, k);
        __m256 xv[M][4];
        for (int m = 0; m < M; ++m)
          for (int i = 0; i < 4; ++i) xv[m][i] = _mm256_loadu_ps(xp + m * xs + k + 8 * i);
        for (int r = 0; r < R; ++r) {
          const uint8_t* b = c[r] + k / 2;
          const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b)));
          const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 8)));
          const __m256 w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, lo4)), sv[r], ov[r]);
          const __m256 w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, lo4)), sv[r], ov[r]);
          const __m256 w2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), sv[r], ov[r]);
          const __m256 w3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), sv[r], ov[r]);
          for (int m = 0; m < M; ++m) {
            acc[m][r] = _mm256_fmadd_ps(w0, xv[m][0], acc[m][r]);
            acc[m][r] = _mm256_fmadd_ps(w1, xv[m][1], acc[m][r]);
            acc[m][r] = _mm256_fmadd_ps(w2, xv[m][2], acc[m][r]);
            acc[m][r] = _mm256_fmadd_ps(w3, xv[m][3], acc[m][r]);
          }
        }
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = hsum8(acc[m][r]);
}

// ---- AVX-512F (runtime dispatch) ----

// GCC 12's AVX-512 intrinsics read an _mm512_undefined_*() operand and warn about it when inlined
// (GCC bug 105593, fixed in GCC 13): silenced for these two kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

template <int M, int R>
[[gnu::target("avx512f,avx2,fma,f16c")]] void q8_rows_avx512(const QuantRows& w, const float* x, int64_t xs,
                                                             const RowMat<float>& o, int64_t n) {
  const int64_t K = w.K, G = w.group, ng = K / G;
  const int8_t* c[R];
  for (int r = 0; r < R; ++r) c[r] = reinterpret_cast<const int8_t*>(w.codes + (n + r) * w.code_stride);
  const uint8_t* next = w.codes + (n + R) * w.code_stride;
  const int64_t block_bytes = R * w.code_stride;
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  alignas(64) float s[R][kSBatch], z[R][kSBatch];
  for (int64_t g0 = 0; g0 < ng; g0 += kSBatch) {
    const int64_t gn = std::min(kSBatch, ng - g0);
    load_scales<R>(w, n, g0, gn, s, z);
    for (int64_t g = 0; g < gn; ++g) {
      const int64_t kb = (g0 + g) * G;
      for (int64_t k = kb; k < kb + G; k += 16) {
        if (k % kChunk == 0) prefetch_next<R, 1>(next, block_bytes, k);
        __m512 xv[M];
        for (int m = 0; m < M; ++m) xv[m] = _mm512_loadu_ps(x + m * xs + k);
        for (int r = 0; r < R; ++r) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c[r] + k));
          const __m512 wv = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(s[r][g]));
          for (int m = 0; m < M; ++m) acc[m][r] = _mm512_fmadd_ps(wv, xv[m], acc[m][r]);
        }
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = _mm512_reduce_add_ps(acc[m][r]);
}

template <int M, int R>
[[gnu::target("avx512f,avx2,fma,f16c")]] void q4_rows_avx512(const QuantRows& w, const float* xp, int64_t xs,
                                                             const RowMat<float>& o, int64_t n) {
  const int64_t K = w.K, G = w.group, ng = K / G;
  const uint8_t* c[R];
  for (int r = 0; r < R; ++r) c[r] = w.codes + (n + r) * w.code_stride;
  const uint8_t* next = w.codes + (n + R) * w.code_stride;
  const int64_t block_bytes = R * w.code_stride;
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  // The 16 nibble values: u (asymmetric: t = s·u + z) or u - 8 (symmetric: t = s·(u - 8), exact).
  const __m512 tu = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 tc = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  alignas(64) float s[R][kSBatch], z[R][kSBatch];
  for (int64_t g0 = 0; g0 < ng; g0 += kSBatch) {
    const int64_t gn = std::min(kSBatch, ng - g0);
    load_scales<R>(w, n, g0, gn, s, z);
    for (int64_t g = 0; g < gn; ++g) {
      __m512 t[R];
      for (int r = 0; r < R; ++r)
        t[r] = w.zero ? _mm512_fmadd_ps(tu, _mm512_set1_ps(s[r][g]), _mm512_set1_ps(z[r][g]))
                      : _mm512_mul_ps(tc, _mm512_set1_ps(s[r][g]));
      const int64_t kb = (g0 + g) * G;
      for (int64_t k = kb; k < kb + G; k += kChunk) {
        prefetch_next<R, 2>(next, block_bytes, k);
        __m512 xlo[M], xhi[M];
        for (int m = 0; m < M; ++m) {
          xlo[m] = _mm512_loadu_ps(xp + m * xs + k);
          xhi[m] = _mm512_loadu_ps(xp + m * xs + k + 16);
        }
        for (int r = 0; r < R; ++r) {
          const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c[r] + k / 2)));
          const __m512 wlo = _mm512_permutexvar_ps(v, t[r]);
          const __m512 whi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t[r]);
          for (int m = 0; m < M; ++m) {
            acc[m][r] = _mm512_fmadd_ps(wlo, xlo[m], acc[m][r]);
            acc[m][r] = _mm512_fmadd_ps(whi, xhi[m], acc[m][r]);
          }
        }
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = _mm512_reduce_add_ps(acc[m][r]);
}

#pragma GCC diagnostic pop

#endif  // SAILVL_CPU_AVX2

// ---- kernel choice ----

// Rows per block for M rows of x: the M·R accumulators, M (AVX2 q4: 4M) x vectors and R tables or
// scales must fit the register file (16 ymm / 32 zmm).
constexpr int rows_per_block(QuantIsa isa, int M) {
  if (isa == QuantIsa::Avx512) return M == 1 ? 8 : M == 4 ? 2 : 4;
  if (isa == QuantIsa::Avx2) return M == 1 ? 4 : 2;
  return 1;
}

template <int M, int R>
RowsFn pick(QuantIsa isa, QuantType t) {
#ifdef SAILVL_CPU_AVX2
  if (isa == QuantIsa::Avx512) return t == QuantType::Q8 ? q8_rows_avx512<M, R> : q4_rows_avx512<M, R>;
  if (isa == QuantIsa::Avx2) return t == QuantType::Q8 ? q8_rows_avx2<M, R> : q4_rows_avx2<M, R>;
#endif
  return rows_scalar<M, R>;
}

template <int M>
void gemv_m(const RowMat<const float>& x, const QuantRows& w, const RowMat<float>& o, QuantIsa isa) {
  const int64_t N = w.N, K = w.K;
  // The x the kernel reads: q4 vector kernels want the nibble order (xp), the others x itself.
  const float* xk = x.p;
  int64_t xs = x.stride;
  if (w.type == QuantType::Q4 && isa != QuantIsa::Scalar) {
    static thread_local std::vector<float> xp;  // per calling thread, kept between calls
    if (xp.size() < static_cast<size_t>(M * K)) xp.resize(static_cast<size_t>(M * K));
    for (int m = 0; m < M; ++m) {
      const float* src = x.row(m);
      float* dst = xp.data() + m * K;
      for (int64_t c = 0; c < K; c += kChunk)
        for (int64_t j = 0; j < kChunk / 2; ++j) {
          dst[c + j] = src[c + 2 * j];
          dst[c + kChunk / 2 + j] = src[c + 2 * j + 1];
        }
    }
    xk = xp.data();
    xs = K;
  }
  RowsFn block = nullptr, single = nullptr;
  int R = 1;
  switch (isa) {
    case QuantIsa::Avx512:
      R = rows_per_block(QuantIsa::Avx512, M);
      block = R == 8 ? pick<M, 8>(isa, w.type) : R == 4 ? pick<M, 4>(isa, w.type) : pick<M, 2>(isa, w.type);
      break;
    case QuantIsa::Avx2:
      R = rows_per_block(QuantIsa::Avx2, M);
      block = R == 4 ? pick<M, 4>(isa, w.type) : pick<M, 2>(isa, w.type);
      break;
    case QuantIsa::Scalar: block = pick<M, 1>(isa, w.type); break;
  }
  single = pick<M, 1>(isa, w.type);
  const int64_t blocks = N / R;
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t b = 0; b < blocks; ++b) block(w, xk, xs, o, b * R);
  for (int64_t n = blocks * R; n < N; ++n) single(w, xk, xs, o, n);
}

QuantIsa detect_isa() {
#ifdef SAILVL_CPU_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return QuantIsa::Avx512;
  return QuantIsa::Avx2;
#else
  return QuantIsa::Scalar;
#endif
}

std::atomic<QuantIsa>& isa_in_use() {
  static std::atomic<QuantIsa> isa{quant_isa_best()};
  return isa;
}

}  // namespace

const char* quant_isa_name(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::Scalar: return "scalar";
    case QuantIsa::Avx2: return "avx2";
    case QuantIsa::Avx512: return "avx512";
  }
  return "?";
}

QuantIsa quant_isa_best() {
  static const QuantIsa best = detect_isa();
  return best;
}

QuantIsa quant_isa() { return isa_in_use().load(std::memory_order_relaxed); }

void set_quant_isa(QuantIsa isa) {
  SAILVL_CHECK(isa <= quant_isa_best(), Internal, "set_quant_isa: ", quant_isa_name(isa),
               " is not supported here (best: ", quant_isa_name(quant_isa_best()), ")");
  isa_in_use().store(isa, std::memory_order_relaxed);
}

QuantRows quant_rows(const Weight& w, const char* op) {
  SAILVL_OP_CHECK(w.quantized() && w.data.defined() && w.data.device().is_cpu() && w.data.dim() == 2, op,
                  "w must be a quantised CPU weight, got ", w.describe());
  const DType want = w.type == QuantType::Q8 ? DType::I8 : DType::U8;
  SAILVL_OP_CHECK(w.data.dtype() == want, op, quant_type_name(w.type), " codes must be ", dtype_name(want), ", got ",
                  w.data.describe());
  QuantRows q;
  q.type = w.type;
  q.N = w.rows();
  q.K = w.cols();
  q.group = w.group;
  SAILVL_OP_CHECK(q.group > 0 && q.group % 32 == 0 && q.K % q.group == 0, op, "K = ", q.K,
                  " is not a multiple of the group ", q.group, " (a multiple of 32) in ", w.describe());
  SAILVL_OP_CHECK(w.data.size(1) <= 1 || w.data.stride(1) == 1, op, "codes need contiguous rows: ", w.data.describe());
  const Shape sshape{q.N, q.K / q.group};
  SAILVL_OP_CHECK(w.scale.defined() && w.scale.device().is_cpu() && w.scale.dtype() == DType::F16 &&
                      w.scale.shape() == sshape && (sshape[1] <= 1 || w.scale.stride(1) == 1),
                  op, "scales must be F16 ", shape_str(sshape), " with contiguous rows, got ",
                  w.scale.defined() ? w.scale.describe() : "undefined");
  if (w.zero.defined())
    SAILVL_OP_CHECK(w.type == QuantType::Q4 && w.zero.device().is_cpu() && w.zero.dtype() == DType::F16 &&
                        w.zero.shape() == sshape && w.zero.strides() == w.scale.strides(),
                    op, "zeros must be F16 ", shape_str(sshape), " laid out as the scales, got ", w.zero.describe());
  q.codes = static_cast<const uint8_t*>(w.data.raw_data());
  q.code_stride = w.data.stride(0);
  q.scale = w.scale.data<const uint16_t>();
  q.zero = w.zero.defined() ? w.zero.data<const uint16_t>() : nullptr;
  q.scale_stride = w.scale.stride(0);
  return q;
}

void quant_gemv(const RowMat<const float>& x, const QuantRows& w, const RowMat<float>& out) {
  const QuantIsa isa = quant_isa();
  switch (x.rows) {
    case 1: return gemv_m<1>(x, w, out, isa);
    case 2: return gemv_m<2>(x, w, out, isa);
    case 3: return gemv_m<3>(x, w, out, isa);
    default: return gemv_m<4>(x, w, out, isa);
  }
}

void dequant_row(const QuantRows& w, int64_t n, int64_t k0, int64_t len, float* dst) {
  const uint8_t* c = w.codes + n * w.code_stride;
  const uint16_t* sc = w.scale + n * w.scale_stride;
  const uint16_t* zc = w.zero ? w.zero + n * w.scale_stride : nullptr;
  for (int64_t k = k0; k < k0 + len; ++k) {
    const float s = f16_to_f32(sc[k / w.group]);
    if (w.type == QuantType::Q8) {
      dst[k - k0] = s * static_cast<float>(static_cast<int8_t>(c[k]));
    } else {
      const float u = static_cast<float>(k % 2 == 0 ? c[k / 2] & 0xf : c[k / 2] >> 4);
      dst[k - k0] = zc ? std::fma(s, u, f16_to_f32(zc[k / w.group])) : s * (u - 8.0f);
    }
  }
}

}  // namespace sailvl::ops::cpu
