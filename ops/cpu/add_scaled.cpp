// Scaled residual add (InternViT layer scale `h += ls ⊙ y`): out[r, c] = a[r, c] + s[c] · b[r, c].
//
// s is a learned [C] vector stored as BF16/F16/F32; it is converted to F32 once per call.
// The product s·b is rounded to F32 before the add (as torch's `ls * y` then `h + ...` does).
// Parallel plan: rows split across OpenMP threads.
// Preconditions: out, a, b F32 with the same shape [..., C]; s [C]; out may alias a or b.
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b) {
  constexpr const char* op = "add_scaled";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(a, DType::F32, op, "a");
  check_dtype(b, DType::F32, op, "b");
  SAILVL_OP_CHECK(out.shape() == a.shape() && out.shape() == b.shape(), op, "shape mismatch ", out.describe(), ", ",
                  a.describe(), ", ", b.describe());
  const auto o = as_rows(out, op, "out");
  const auto x = as_rows<const float>(a, op, "a");
  const auto y = as_rows<const float>(b, op, "b");
  const std::vector<float> sv = vec_f32(s, o.cols, op, "s");
  const float* sc = sv.data();
#pragma omp parallel for schedule(static) if (o.rows * o.cols > 16384)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* xr = x.row(r);
    const float* yr = y.row(r);
    float* zr = o.row(r);
    for (int64_t c = 0; c < o.cols; ++c) {
      const float t = sc[c] * yr[c];
      zr[c] = xr[c] + t;
    }
  }
}

}  // namespace sailvl::ops::cpu
