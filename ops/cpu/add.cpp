// Residual add: out = a + b (same shape), F32.
//
// Parallel plan: rows split across OpenMP threads; the inner loop vectorises.
// Preconditions: out, a, b F32 with the same shape and contiguous last dims; out may alias a or b.
#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  constexpr const char* op = "add";
  check_dtype(out, DType::F32, op, "out");
  check_dtype(a, DType::F32, op, "a");
  check_dtype(b, DType::F32, op, "b");
  SAILVL_OP_CHECK(out.shape() == a.shape() && out.shape() == b.shape(), op, "shape mismatch ", out.describe(), ", ",
                  a.describe(), ", ", b.describe());
  const auto o = as_rows(out, op, "out");
  const auto x = as_rows<const float>(a, op, "a");
  const auto y = as_rows<const float>(b, op, "b");
#pragma omp parallel for schedule(static) if (o.rows * o.cols > 16384)
  for (int64_t r = 0; r < o.rows; ++r) {
    const float* xr = x.row(r);
    const float* yr = y.row(r);
    float* zr = o.row(r);
    for (int64_t c = 0; c < o.cols; ++c) zr[c] = xr[c] + yr[c];
  }
}

}  // namespace sailvl::ops::cpu
