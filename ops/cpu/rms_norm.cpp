// RMSNorm over the last dim with Hugging Face's order of operations (Qwen2RMSNorm, AIMv2's RMSNorm):
//   var = mean(x²)                   (F32 math; the sum is accumulated in double here)
//   h   = x · rsqrt(var + eps)       (F32)
//   out = cast_to_activation_dtype(h) · w
// On CPU the activation dtype is F32, so the cast is the identity and out = float(w) · h, which is
// what torch computes for a BF16 weight times an F32 tensor (type promotion to F32).
// Parallel plan: one row per iteration, rows split across OpenMP threads.
// Preconditions: out, x F32 [..., D] with the same shape; w [D] BF16/F16/F32; out may alias x.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
  constexpr const char* op = "rms_norm";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(x, DType::F32, op, "x");
  SAILVL_OP_CHECK(out.shape() == x.shape(), op, "shape mismatch ", out.describe(), " vs ", x.describe());
  const auto o = as_rows(out, op, "out");
  const auto a = as_rows<const float>(x, op, "x");
  const int64_t D = o.cols;
  SAILVL_OP_CHECK(D > 0, op, "empty last dim");
  const std::vector<float> wv = vec_f32(w, D, op, "w");
  const float* wp = wv.data();
#pragma omp parallel for schedule(static) if (o.rows > 1)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* xr = a.row(r);
    float* yr = o.row(r);
    const double ss = sum_sq_f64(xr, D, 0.0);
    const float var = static_cast<float>(ss / static_cast<double>(D));
    const float inv = 1.0f / std::sqrt(var + eps);
    for (int64_t c = 0; c < D; ++c) {
      const float h = xr[c] * inv;
      yr[c] = wp[c] * h;
    }
  }
}

}  // namespace sailvl::ops::cpu
