// SwiGLU gate (Qwen2 MLP, AIMv2 MLP): out = silu(gate) · up, silu(g) = g / (1 + e^-g).
//
// Math in F32; e^-g by the AVX2 exp8 of cpu_util.h (~2 ulp) on 8-lane blocks, std::exp on the tail.
// Parallel plan: rows split across OpenMP threads.
// Preconditions: out, gate, up F32 with the same shape, contiguous last dims; out may alias either.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) {
  constexpr const char* op = "silu_mul";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(gate, DType::F32, op, "gate");
  check_dtype(up, DType::F32, op, "up");
  SAILVL_OP_CHECK(out.shape() == gate.shape() && out.shape() == up.shape(), op, "shape mismatch ", out.describe(), ", ",
                  gate.describe(), ", ", up.describe());
  const auto o = as_rows(out, op, "out");
  const auto g = as_rows<const float>(gate, op, "gate");
  const auto u = as_rows<const float>(up, op, "up");
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* gr = g.row(r);
    const float* ur = u.row(r);
    float* yr = o.row(r);
    int64_t c = 0;
#ifdef SAILVL_CPU_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; c + 8 <= o.cols; c += 8) {
      const __m256 v = _mm256_loadu_ps(gr + c);
      const __m256 den = _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, v)));
      _mm256_storeu_ps(yr + c, _mm256_mul_ps(_mm256_div_ps(v, den), _mm256_loadu_ps(ur + c)));
    }
#endif
    for (; c < o.cols; ++c) {
      const float v = gr[c];
      yr[c] = v / (1.0f + std::exp(-v)) * ur[c];
    }
  }
}

}  // namespace sailvl::ops::cpu
