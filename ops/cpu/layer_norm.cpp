// LayerNorm over the last dim (InternViT norm1/norm2, the mlp1 projector's LayerNorm):
//   mean = Σx / D,  var = Σ(x - mean)² / D  (biased, as torch.nn.LayerNorm),
//   out = (x - mean) · rsqrt(var + eps) · w + b.
//
// Numerics: the two sums are accumulated in double (two passes: mean first, then the centred
// squares, so there is no cancellation); the normalised value and the affine step are F32.
// Parallel plan: one row per iteration, rows split across OpenMP threads.
// Preconditions: out, x F32 [..., D] with the same shape; w, b [D] BF16/F16/F32; out may alias x.
#include <cmath>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  constexpr const char* op = "layer_norm";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(x, DType::F32, op, "x");
  SAILVL_OP_CHECK(out.shape() == x.shape(), op, "shape mismatch ", out.describe(), " vs ", x.describe());
  const auto o = as_rows(out, op, "out");
  const auto a = as_rows<const float>(x, op, "x");
  const int64_t D = o.cols;
  SAILVL_OP_CHECK(D > 0, op, "empty last dim");
  const std::vector<float> wv = vec_f32(w, D, op, "w"), bv = vec_f32(b, D, op, "b");
  const float* wp = wv.data();
  const float* bp = bv.data();
#pragma omp parallel for schedule(static) if (o.rows > 1)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* xr = a.row(r);
    float* yr = o.row(r);
    const float mean = static_cast<float>(sum_f64(xr, D) / static_cast<double>(D));
    const double ss = sum_sq_f64(xr, D, mean);
    const float var = static_cast<float>(ss / static_cast<double>(D));
    const float rstd = 1.0f / std::sqrt(var + eps);
    for (int64_t c = 0; c < D; ++c) yr[c] = (xr[c] - mean) * rstd * wp[c] + bp[c];
  }
}

}  // namespace sailvl::ops::cpu
