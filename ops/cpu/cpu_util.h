// Helpers shared by the CPU kernels (ops/cpu/*.cpp): views of tensors as F32 row matrices,
// weight-dtype conversion to F32, and the precondition vocabulary.
//
// Every CPU op sees activations as F32 "row matrices": a pointer, a row count, a column count and
// a row stride in elements (the last dim contiguous, the leading dims collapsible into one stride).
// That covers contiguous tensors and the cheap views the model makes (a prefix of a KV cache, a
// slice of a fused QKV output). Anything else is a bug in the caller and fails with
// ErrorKind::Internal naming the op and the tensor.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

// The vector paths need AVX2 + FMA + F16C (every x86 CPU with AVX2 since Haswell / Zen has all
// three; the build uses -march=native). Without them the scalar loops run.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SAILVL_CPU_AVX2 1
#include <immintrin.h>
#endif

#include "tensor/tensor.h"

namespace sailvl::ops::cpu {

#define SAILVL_OP_CHECK(cond, op, ...) SAILVL_CHECK(cond, Internal, op, ": ", __VA_ARGS__)

// A 2-D F32 view: row r starts at p + r * stride, columns are contiguous.
template <typename T>
struct RowMat {
  T* p = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
  T* row(int64_t r) const { return p + r * stride; }
};

// t viewed as [prod(leading dims), last dim]. Requires stride(-1) == 1 (or a size-1 last dim) and
// leading dims that collapse into one stride (true for contiguous tensors and for narrow() on the
// outermost dim or on the last dim of a contiguous tensor).
template <typename T = float>
inline RowMat<T> as_rows(const Tensor& t, const char* op, const char* what) {
  SAILVL_OP_CHECK(t.defined() && t.device().is_cpu(), op, what, " must be a CPU tensor");
  SAILVL_OP_CHECK(t.dim() >= 1, op, what, " must have at least one dim, got ", t.describe());
  RowMat<T> m;
  m.cols = t.size(-1);
  SAILVL_OP_CHECK(m.cols <= 1 || t.stride(-1) == 1, op, what, " needs a contiguous last dim, got ", t.describe(),
                  " strides ", shape_str(t.strides()));
  m.rows = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) m.rows *= t.size(d);
  // Find the row stride: the stride of the innermost leading dim with size > 1; every outer dim of
  // size > 1 must be exactly (inner size × inner stride).
  int64_t stride = m.cols, expect = -1;
  for (int64_t d = t.dim() - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (expect < 0) {
      stride = t.stride(d);
    } else {
      SAILVL_OP_CHECK(t.stride(d) == expect, op, what, " leading dims do not collapse: ", t.describe(), " strides ",
                      shape_str(t.strides()));
    }
    expect = t.stride(d) * t.size(d);
  }
  SAILVL_OP_CHECK(m.rows <= 1 || stride >= m.cols, op, what, " rows overlap: ", t.describe());
  m.stride = stride;
  m.p = static_cast<T*>(t.raw_data());
  return m;
}

inline void check_dtype(const Tensor& t, DType want, const char* op, const char* what) {
  SAILVL_OP_CHECK(t.dtype() == want, op, what, " must be ", dtype_name(want), ", got ", t.describe());
}

inline bool is_weight_dtype(DType t) { return t == DType::BF16 || t == DType::F16 || t == DType::F32; }

// dst[0..n) = float(src[0..n)) for a BF16/F16/F32 source. BF16 -> F32 is exact (a 16-bit shift),
// F16 -> F32 is exact (F16C's vcvtph2ps).
inline void to_f32(float* dst, const void* src, DType dt, int64_t n) {
  int64_t i = 0;
  if (dt == DType::F32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  const auto* s = static_cast<const uint16_t*>(src);
  if (dt == DType::BF16) {
#ifdef SAILVL_CPU_AVX2
    for (; i + 8 <= n; i += 8) {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
      __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
#endif
    for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
    return;
  }
#ifdef SAILVL_CPU_AVX2
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#endif
  for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}

// A small 1-D parameter (norm weight, bias, layer scale) of any float dtype as F32.
inline std::vector<float> vec_f32(const Tensor& t, int64_t n, const char* op, const char* what) {
  SAILVL_OP_CHECK(t.defined() && t.device().is_cpu() && t.dim() == 1 && t.size(0) == n && is_weight_dtype(t.dtype()),
                  op, what, " must be a CPU float vector of size ", n, ", got ",
                  t.defined() ? t.describe() : "undefined");
  SAILVL_OP_CHECK(n <= 1 || t.stride(0) == 1, op, what, " must be contiguous");
  std::vector<float> v(static_cast<size_t>(n));
  to_f32(v.data(), t.raw_data(), t.dtype(), n);
  return v;
}

// Σ (x[i] - c)² and Σ x[i] over a contiguous F32 row, accumulated in double (AVX2: 4-lane
// double FMAs; the order differs from a serial loop only in double rounding, ~1e-16 relative).
inline double sum_f64(const float* x, int64_t n) {
  int64_t i = 0;
  double s = 0;
#ifdef SAILVL_CPU_AVX2
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  double l[4];
  _mm256_storeu_pd(l, _mm256_add_pd(a0, a1));
  s = (l[0] + l[1]) + (l[2] + l[3]);
#endif
  for (; i < n; ++i) s += x[i];
  return s;
}
inline double sum_sq_f64(const float* x, int64_t n, double c) {
  int64_t i = 0;
  double s = 0;
#ifdef SAILVL_CPU_AVX2
  const __m256d vc = _mm256_set1_pd(c);
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), vc);
    const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), vc);
    a0 = _mm256_fmadd_pd(d0, d0, a0);
    a1 = _mm256_fmadd_pd(d1, d1, a1);
  }
  double l[4];
  _mm256_storeu_pd(l, _mm256_add_pd(a0, a1));
  s = (l[0] + l[1]) + (l[2] + l[3]);
#endif
  for (; i < n; ++i) s += (static_cast<double>(x[i]) - c) * (static_cast<double>(x[i]) - c);
  return s;
}

#ifdef SAILVL_CPU_AVX2
// e^x for 8 floats, the Cephes expf recipe: x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two so
// n·ln2 is exact), e^r by a degree-7 polynomial, 2^n by building the exponent bits. Max relative
// error ~2 ulp over the clamped range. Inputs are clamped to [-87, 88.37]: results below e^-87
// (1.6e-38, the smallest normal float region) come out as ~e^-87 instead of 0/subnormal, which is
// harmless for softmax weights and SiLU; -inf gives ~1.6e-38, +inf/overflow gives ~FLT_MAX.
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n: n in [-126, 128) after the clamp; n = 128 only at the very top, where e^x overflows anyway.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

}  // namespace sailvl::ops::cpu
