// Linear layer: out[M, N] = x[M, K] · w[N, K]ᵀ (+ b[N]), x/out F32, w BF16/F16/F32, F32 accumulation.
//
// Two regimes, chosen by M (the number of token rows):
//
// 1. Decode, M <= kGemvMaxM (= 4): a GEMV that streams the weight once. It is memory-bound: every
//    weight byte is read exactly once, so speed = weight bytes / copy bandwidth at best. Each
//    OpenMP thread takes a contiguous range of output rows (so the hardware prefetcher sees a few
//    long sequential streams) and walks R rows of w at a time (R = 8, 4, 2 for M = 1, 2, >=3, so
//    M·R accumulators + M inputs fit in the 16 AVX2 registers). A BF16 weight is widened to F32
//    with a 16-bit shift (vpmovzxwd + vpslld: exact), F16 with vcvtph2ps, and accumulated with FMA
//    into 8-lane F32 registers; the 8 lanes are summed at the end of the row.
//    Batched decode (the server's continuous batching), kGemvMaxM < M <= kBatchedGemvMaxM (= 16),
//    float weights: the same GEMV with the x rows in groups of <= 4 inside each block of R = 2
//    weight rows, so a block is read from memory once and from L1 for the other groups (2 rows of
//    K <= 8960 BF16 = 35 KB). One step of B sequences then costs about one weight stream plus the
//    extra FMAs, instead of the packing and F32 panel traffic of the GEMM.
//
// 2. Prefill / vision, M > kGemvMaxM (float weights: M > kBatchedGemvMaxM): compute-bound. AVX2 builds use our packed GEMM (gemm.cpp:
//    BLIS-style 6 × 16 micro-kernel, the BF16 → F32 conversion fused into the weight packing, so
//    the model is never copied to F32). Builds without AVX2 cut the N output columns into panels
//    of <= 512 weight rows, convert each panel to F32 in a per-thread scratch buffer and multiply
//    with Eigen's GEBP kernel: out[:, n0:n0+nb] = x · panelᵀ.
//
// Quantised weights (q8/q4, ops/quant.h) take the same two regimes: quant_gemv.cpp for M <= 4, and
// the packed GEMM with the codes unpacked while packing (gemm_xwt_quant) for M > 4; builds without
// AVX2 dequantise each panel into the scratch buffer instead of widening it.
//
// Accumulation error (both paths): F32 sums of K products, |err| <~ K·2^-24·Σ|x||w| (a bound; the
// typical error is ~sqrt(K) times smaller). The bias is added in F32 after the dot product.
// Preconditions: x F32 [..., K] and out F32 [..., N] with the same leading dims and contiguous,
// collapsible rows; w [N, K] with contiguous rows (quantised: quant_rows' checks); bias [N] any
// float dtype.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <utility>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/quant_gemv.h"

namespace sailvl::ops::cpu {

namespace {

constexpr int64_t kGemvMaxM = 4;
constexpr int64_t kBatchedGemvMaxM = 16;

// ---- GEMV: out[m, n] = Σ_k x[m, k] · w[n, k] for n in [n0, n1) ----

#ifdef SAILVL_CPU_AVX2
template <DType WT>
inline __m256 load8(const void* p, int64_t k) {
  if constexpr (WT == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + k);
  } else if constexpr (WT == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + k)));
  }
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

template <DType WT>
inline float wval(const void* row, int64_t k) {
  if constexpr (WT == DType::F32)
    return static_cast<const float*>(row)[k];
  else if constexpr (WT == DType::BF16)
    return bf16_to_f32(static_cast<const uint16_t*>(row)[k]);
  else
    return f16_to_f32(static_cast<const uint16_t*>(row)[k]);
}

// R rows of w starting at row n, M rows of x.
template <DType WT, int M, int R>
inline void gemv_block(const uint8_t* w, int64_t w_row_bytes, const RowMat<const float>& x, const RowMat<float>& o,
                       int64_t n, int64_t K) {
  const void* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (n + r) * w_row_bytes;
  float res[M][R];
  int64_t k = 0;
#ifdef SAILVL_CPU_AVX2
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 xv[M];
    for (int m = 0; m < M; ++m) xv[m] = _mm256_loadu_ps(x.row(m) + k);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = load8<WT>(wr[r], k);
      for (int m = 0; m < M; ++m) acc[m][r] = _mm256_fmadd_ps(wv, xv[m], acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) res[m][r] = hsum8(acc[m][r]);
#else
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) res[m][r] = 0;
#endif
  for (; k < K; ++k)
    for (int r = 0; r < R; ++r) {
      const float wv = wval<WT>(wr[r], k);
      for (int m = 0; m < M; ++m) res[m][r] += x.row(m)[k] * wv;
    }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) o.row(m)[n + r] = res[m][r];
}

template <DType WT, int M>
void gemv(const uint8_t* w, int64_t w_row_bytes, const RowMat<const float>& x, const RowMat<float>& o, int64_t N,
          int64_t K) {
  constexpr int R = M == 1 ? 8 : M == 2 ? 4 : 2;
  const int64_t blocks = N / R;
  // Static schedule: each thread streams one contiguous range of rows.
#pragma omp parallel for schedule(static) if (N * K > 65536)
  for (int64_t b = 0; b < blocks; ++b) gemv_block<WT, M, R>(w, w_row_bytes, x, o, b * R, K);
  for (int64_t n = blocks * R; n < N; ++n) gemv_block<WT, M, 1>(w, w_row_bytes, x, o, n, K);
}

// kGemvMaxM < M <= kBatchedGemvMaxM: blocks of R = 2 weight rows; for each, the x rows in groups
// of up to 4 (the first group streams the block from memory, the others find it in L1).
template <DType WT>
void gemv_grouped(const uint8_t* w, int64_t w_row_bytes, const RowMat<const float>& x, const RowMat<float>& o,
                  int64_t N, int64_t K) {
  constexpr int R = 2;
  const int64_t blocks = N / R, M = x.rows;
  auto group = [&](int64_t m0) {
    const int64_t g = std::min<int64_t>(4, M - m0);
    return std::pair{RowMat<const float>{x.p + m0 * x.stride, g, x.cols, x.stride},
                     RowMat<float>{o.p + m0 * o.stride, g, o.cols, o.stride}};
  };
  auto run = [&]<int Rb>(int64_t n) {
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
      const auto [xg, og] = group(m0);
      switch (xg.rows) {
        case 1: gemv_block<WT, 1, Rb>(w, w_row_bytes, xg, og, n, K); break;
        case 2: gemv_block<WT, 2, Rb>(w, w_row_bytes, xg, og, n, K); break;
        case 3: gemv_block<WT, 3, Rb>(w, w_row_bytes, xg, og, n, K); break;
        default: gemv_block<WT, 4, Rb>(w, w_row_bytes, xg, og, n, K); break;
      }
    }
  };
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) run.template operator()<R>(b * R);
  for (int64_t n = blocks * R; n < N; ++n) run.template operator()<1>(n);
}

template <DType WT>
void gemv_dispatch_m(const uint8_t* w, int64_t w_row_bytes, const RowMat<const float>& x, const RowMat<float>& o,
                     int64_t N, int64_t K) {
  switch (x.rows) {
    case 1: return gemv<WT, 1>(w, w_row_bytes, x, o, N, K);
    case 2: return gemv<WT, 2>(w, w_row_bytes, x, o, N, K);
    case 3: return gemv<WT, 3>(w, w_row_bytes, x, o, N, K);
    case 4: return gemv<WT, 4>(w, w_row_bytes, x, o, N, K);
    default: return gemv_grouped<WT>(w, w_row_bytes, x, o, N, K);
  }
}

// ---- GEMM over weight panels (the portable fallback) ----

#ifndef SAILVL_CPU_AVX2

constexpr int64_t kPanelMaxRows = 512;
constexpr int64_t kPanelMaxFloats = int64_t{1} << 19;

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMapRM = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;
using MapRM = Eigen::Map<RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

// w_row(n, dst) writes weight row n as K floats; float_rows (F32 weights) are used in place instead.
template <class RowF32>
void gemm_panels(const RowF32& w_row, const float* float_rows, int64_t w_row_elems, const RowMat<const float>& x,
                 const RowMat<float>& o, int64_t N, int64_t K) {
  const int64_t M = x.rows;
  const int nthreads = omp_get_max_threads();
  // Panel height: small enough that every thread gets >= 2 panels, a multiple of 16 (Eigen's
  // register blocking works on 4/8/12-column strips), and within the caps above.
  // Cap: kPanelMaxRows rows and kPanelMaxFloats of scratch (2 MiB) per thread.
  const int64_t cap = std::clamp<int64_t>(kPanelMaxFloats / K / 16 * 16, 16, kPanelMaxRows);
  int64_t nb = (N + 2 * nthreads - 1) / (2 * nthreads);
  nb = std::clamp<int64_t>((nb + 15) / 16 * 16, 16, cap);
  const int64_t panels = (N + nb - 1) / nb;
  const ConstMapRM X(x.p, M, K, Eigen::OuterStride<>(x.stride));

#pragma omp parallel
  {
    // Per-thread F32 panel, kept between calls (OpenMP reuses its worker threads).
    static thread_local std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * nb, rows = std::min(nb, N - n0);
      const float* panel;
      int64_t ld;
      if (float_rows) {
        panel = float_rows + n0 * w_row_elems;
        ld = w_row_elems;
      } else {
        if (scratch.size() < static_cast<size_t>(rows * K)) scratch.resize(static_cast<size_t>(nb * K));
        for (int64_t r = 0; r < rows; ++r) w_row(n0 + r, scratch.data() + r * K);
        panel = scratch.data();
        ld = K;
      }
      const ConstMapRM W(panel, rows, K, Eigen::OuterStride<>(ld));
      MapRM O(o.p + n0, M, rows, Eigen::OuterStride<>(o.stride));
      O.noalias() = X * W.transpose();
    }
  }
}

#endif  // !SAILVL_CPU_AVX2

}  // namespace

void linear(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias) {
  constexpr const char* op = "linear";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(x, DType::F32, op, "x");
  const Tensor& wt = w.data;
  QuantRows q;
  if (w.quantized()) {
    q = quant_rows(w, op);
  } else {
    SAILVL_OP_CHECK(wt.defined() && wt.device().is_cpu() && wt.dim() == 2 && is_weight_dtype(wt.dtype()), op,
                    "w must be a CPU [N, K] BF16/F16/F32 matrix, got ", wt.defined() ? wt.describe() : "undefined");
    SAILVL_OP_CHECK(wt.size(1) <= 1 || wt.stride(1) == 1, op, "w needs contiguous rows, got ", wt.describe());
  }
  const int64_t N = w.rows(), K = w.cols();
  SAILVL_OP_CHECK(x.size(-1) == K, op, "x ", x.describe(), " does not match w ", w.describe());
  SAILVL_OP_CHECK(out.size(-1) == N && out.dim() == x.dim(), op, "out ", out.describe(), " does not match x ",
                  x.describe(), " and w ", w.describe());
  for (int64_t d = 0; d + 1 < x.dim(); ++d)
    SAILVL_OP_CHECK(out.size(d) == x.size(d), op, "leading dims differ: ", out.describe(), " vs ", x.describe());
  const auto xm = as_rows<const float>(x, op, "x");
  const auto om = as_rows(out, op, "out");
  const int64_t M = xm.rows;
  if (M == 0 || N == 0) return;
  const auto* wb = static_cast<const uint8_t*>(wt.raw_data());
  const int64_t rb = w.quantized() ? 0 : wt.stride(0) * static_cast<int64_t>(dtype_size(wt.dtype()));
  if (K == 0) {
    for (int64_t m = 0; m < M; ++m) std::fill(om.row(m), om.row(m) + N, 0.0f);
  } else if (w.quantized() && M <= kGemvMaxM) {
    quant_gemv(xm, q, om);
  } else if (w.quantized()) {
#ifdef SAILVL_CPU_AVX2
    gemm_xwt_quant(xm, q, om);
#else
    gemm_panels([&](int64_t n, float* dst) { dequant_row(q, n, 0, K, dst); }, nullptr, 0, xm, om, N, K);
#endif
  } else if (M <= kBatchedGemvMaxM) {
    switch (wt.dtype()) {
      case DType::BF16: gemv_dispatch_m<DType::BF16>(wb, rb, xm, om, N, K); break;
      case DType::F16: gemv_dispatch_m<DType::F16>(wb, rb, xm, om, N, K); break;
      default: gemv_dispatch_m<DType::F32>(wb, rb, xm, om, N, K); break;
    }
  } else {
#ifdef SAILVL_CPU_AVX2
    gemm_xwt(xm, wb, rb, wt.dtype(), om, N, K);
#else
    const float* f32_rows = wt.dtype() == DType::F32 ? static_cast<const float*>(wt.raw_data()) : nullptr;
    gemm_panels([&](int64_t n, float* dst) { to_f32(dst, wb + n * rb, wt.dtype(), K); }, f32_rows, wt.stride(0), xm, om,
                N, K);
#endif
  }
  if (bias) {
    const std::vector<float> b = vec_f32(*bias, N, op, "bias");
#pragma omp parallel for schedule(static) if (M * N > 65536)
    for (int64_t m = 0; m < M; ++m) {
      float* r = om.row(m);
      for (int64_t n = 0; n < N; ++n) r[n] += b[n];
    }
  }
}

}  // namespace sailvl::ops::cpu
