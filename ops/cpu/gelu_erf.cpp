// GELU, exact form (InternViT MLP, the mlp1 projector): out = x/2 · (1 + erf(x/√2)).
//
// Math: HF's ACT2FN["gelu"] is torch.nn.functional.gelu(approximate="none"), the erf form, not
// the tanh approximation. With t = |x|/√2, gelu(x) = x/2 · φ where
//   φ = 1 + erf(t)  (x >= 0)      φ = 1 - erf(t) = erfc(t)  (x < 0).
// The negative side needs erfc with a *relative* error bound (gelu → 0 as x → -∞), so:
//   t <  0.84 : erf(t) = t · A(t²)                     A: degree-5 polynomial
//   t >= 0.84 : erfc(t) = e^{-t²} · s · B(s), s = 1/t    B: degree 6 on s ∈ [0.08, 0.45]
//                                                         or degree 7 on s ∈ [0.45, 1.19]
// e^{-t²} is computed from x, not from the rounded t (whose 2^-24 relative error would grow by
// 2t² in e^{-t²}): x²/2 is split exactly as hi + lo (FMA) and e^{-t²} = e^{-hi}·(1 - lo), which
// keeps full relative accuracy for large t (e^{-hi} by exp8 of cpu_util.h). t is clamped to 12.5 in the erfc branch
// (e^{-t²} has underflowed long before). The coefficients are Chebyshev least-squares fits made
// for this file (in float64 against mpmath's erf/erfc, then rounded to F32 and checked in F32
// Horner arithmetic: relative error <= 1.6e-7 on each piece). Measured against double
// 0.5·x·(1 + erf(x/√2)) on a dense grid the result is within 16·2^-24 relative
// (tests/test_ops_cpu.cpp, Elementwise.GeluErfDenseGrid); the scalar tail (and a build without
// AVX2) uses 0.5·x·erfc(-x/√2) in double, rounded once.
// Parallel plan: rows split across OpenMP threads; 8 lanes at a time (AVX2), scalar on the tail.
// Preconditions: out and x F32 with the same shape, rows with a contiguous last dim; out may alias x.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

namespace {

#ifdef SAILVL_CPU_AVX2
template <size_t N>
inline __m256 horner(const float (&c)[N], __m256 v) {
  __m256 acc = _mm256_set1_ps(c[N - 1]);
  for (size_t i = N - 1; i-- > 0;) acc = _mm256_fmadd_ps(acc, v, _mm256_set1_ps(c[i]));
  return acc;
}

constexpr float kA[] = {1.1283791065216064f,    -0.37612566351890564f, 0.11282744258642197f,
                        -0.026805758476257324f, 0.005058859474956989f, -0.0006371152121573687f};
// s ∈ [0.08, 0.45]; v = (s - 0.265) · 5.405405405
constexpr float kB1[] = {0.546169102191925f,     -0.023001624271273613f, -0.005406165029853582f,
                         0.0013760507572442293f, -5.43933711014688e-05f, -5.2648170822067186e-05f,
                         1.4453940821113065e-05f};
// s ∈ [0.45, 1/0.84]; v = (s - 0.8202380952) · 2.70096463
constexpr float kB2[] = {0.4564118981361389f,    -0.061397384852170944f,  0.003628636710345745f,
                         0.0014129042392596602f, -0.0007266139728017151f, 0.00021258715423755348f,
                         -3.94187263736967e-05f, 1.7070716467060265e-06f};

inline __m256 gelu8(__m256 x) {
  const __m256 t = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(0.70710678118654752f));
  const __m256 one = _mm256_set1_ps(1.0f);
  // erf(t) for small t.
  const __m256 erf_a = _mm256_mul_ps(t, horner(kA, _mm256_mul_ps(t, t)));
  // erfc(t) for t >= 0.84.
  const __m256 tb = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(0.84f)), _mm256_set1_ps(12.5f));
  const __m256 s = _mm256_div_ps(one, tb);
  const __m256 r1 = horner(kB1, _mm256_mul_ps(_mm256_sub_ps(s, _mm256_set1_ps(0.265f)), _mm256_set1_ps(5.405405405f)));
  const __m256 r2 =
      horner(kB2, _mm256_mul_ps(_mm256_sub_ps(s, _mm256_set1_ps(0.8202380952f)), _mm256_set1_ps(2.70096463f)));
  const __m256 r = _mm256_blendv_ps(r1, r2, _mm256_cmp_ps(s, _mm256_set1_ps(0.45f), _CMP_GE_OQ));
  // t² = x²/2 from x itself, split exactly (the rounded t would cost 2t²·2^-24 relative in e^{-t²}).
  const __m256 xb = _mm256_mul_ps(tb, _mm256_set1_ps(1.41421356237309505f));  // |x| clamped like tb
  const __m256 xa = _mm256_blendv_ps(xb, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x),
                                     _mm256_cmp_ps(tb, t, _CMP_EQ_OQ));  // unclamped lanes: exact |x|
  const __m256 x2 = _mm256_mul_ps(xa, xa);
  const __m256 hi = _mm256_mul_ps(_mm256_set1_ps(0.5f), x2);
  const __m256 lo = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_fmsub_ps(xa, xa, x2));  // exact remainder
  const __m256 e = _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_setzero_ps(), hi)), _mm256_sub_ps(one, lo));
  const __m256 erfc_b = _mm256_mul_ps(_mm256_mul_ps(e, s), r);
  // φ by region and sign.
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
  const __m256 small = _mm256_cmp_ps(t, _mm256_set1_ps(0.84f), _CMP_LT_OQ);
  const __m256 phi_a = _mm256_blendv_ps(_mm256_sub_ps(one, erf_a), _mm256_add_ps(one, erf_a), pos);
  const __m256 phi_b = _mm256_blendv_ps(erfc_b, _mm256_sub_ps(_mm256_set1_ps(2.0f), erfc_b), pos);
  const __m256 phi = _mm256_blendv_ps(phi_b, phi_a, small);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), phi);
}
#endif

}  // namespace

void gelu_erf(const Tensor& out, const Tensor& x) {
  constexpr const char* op = "gelu_erf";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(x, DType::F32, op, "x");
  SAILVL_OP_CHECK(out.shape() == x.shape(), op, "shape mismatch ", out.describe(), " vs ", x.describe());
  const auto o = as_rows(out, op, "out");
  const auto a = as_rows<const float>(x, op, "x");
  constexpr double kInvSqrt2 = 0.70710678118654752440;
#pragma omp parallel for schedule(static) if (o.rows * o.cols > 16384)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* xr = a.row(r);
    float* yr = o.row(r);
    int64_t c = 0;
#ifdef SAILVL_CPU_AVX2
    for (; c + 8 <= o.cols; c += 8) _mm256_storeu_ps(yr + c, gelu8(_mm256_loadu_ps(xr + c)));
#endif
    // Scalar tail / non-AVX2 build: 1 + erf(z) = erfc(-z), in double so that neither the
    // cancellation for x < 0 nor the rounding of x/√2 costs accuracy.
    for (; c < o.cols; ++c) {
      const double v = xr[c];
      yr[c] = static_cast<float>(0.5 * v * std::erfc(-v * kInvSqrt2));
    }
  }
}

}  // namespace sailvl::ops::cpu
