// Patch embedding: Conv2d(3 → C, kernel = stride = P, bias) as im2col + one GEMM.
//
// Math: with G = S/P patches a side, patch n = gy·G + gx (row-major), column index
// col = (ch·P + py)·P + px — the flattening order of w [C, 3, P, P] — the im2col matrix is
//   X[t·G² + n, col] = pixels[t, ch, gy·P + py, gx·P + px]
// and out[t, n, :] = X[t·G² + n, :] · w.reshape(C, 3·P·P)ᵀ + b, which is exactly the convolution.
// Parallel plan: im2col split over (tile, patch row) with OpenMP — each (t, gy, ch, py) copies P
// contiguous pixels per patch — then the GEMM path of linear() (weight panels, Eigen, OpenMP).
// The im2col buffer is T·G²·3P² floats (7 tiles at 448/14: 17 MB), allocated per call.
// Preconditions: pixels F32 [T, 3, S, S] contiguous with S % P == 0; w [C, 3, P, P] contiguous
// (BF16/F16/F32); b [C]; out F32 [T, G², C] contiguous.
#include <algorithm>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b) {
  constexpr const char* op = "patch_embed";
  check_dtype(pixels, DType::F32, op, "pixels");
  check_dtype(out, DType::F32, op, "out");
  SAILVL_OP_CHECK(
      pixels.dim() == 4 && pixels.size(1) == 3 && pixels.size(2) == pixels.size(3) && pixels.is_contiguous(), op,
      "pixels must be contiguous [T, 3, S, S], got ", pixels.describe());
  SAILVL_OP_CHECK(
      w.dim() == 4 && w.size(1) == 3 && w.size(2) == w.size(3) && w.is_contiguous() && is_weight_dtype(w.dtype()), op,
      "w must be contiguous [C, 3, P, P], got ", w.describe());
  const int64_t T = pixels.size(0), S = pixels.size(2), C = w.size(0), P = w.size(2);
  SAILVL_OP_CHECK(P > 0 && S % P == 0, op, "image size ", S, " is not a multiple of the patch size ", P);
  const int64_t G = S / P, NP = G * G, KC = 3 * P * P;
  SAILVL_OP_CHECK(out.dim() == 3 && out.size(0) == T && out.size(1) == NP && out.size(2) == C && out.is_contiguous(),
                  op, "out must be contiguous [", T, ", ", NP, ", ", C, "], got ", out.describe());
  if (T == 0) return;

  Tensor cols = Tensor::empty({T * NP, KC}, DType::F32);
  const float* px = pixels.data<float>();
  float* X = cols.data<float>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t gy = 0; gy < G; ++gy)
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t py = 0; py < P; ++py) {
          const float* src = px + ((t * 3 + ch) * S + gy * P + py) * S;
          for (int64_t gx = 0; gx < G; ++gx) {
            float* dst = X + (t * NP + gy * G + gx) * KC + (ch * P + py) * P;
            std::copy_n(src + gx * P, P, dst);
          }
        }
  linear(out.reshape({T * NP, C}), cols, w.reshape({C, KC}), b);
}

}  // namespace sailvl::ops::cpu
