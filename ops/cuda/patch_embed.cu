// Patch embedding: Conv2d(3 -> C, kernel = stride = P) as im2col + one cuBLASLt GEMM.
//
// Math: out[t, gy*G + gx, c] = b[c] + Σ_{ci,ky,kx} w[c, ci, ky, kx] · pixels[t, ci, gy*P+ky, gx*P+kx]
//       with G = S/P. With k = ci*P*P + ky*P + kx this is cols[t*G*G + gy*G + gx, k] · w[c, k]ᵀ.
// Why im2col + cuBLASLt rather than cuDNN: with stride = kernel the patches do not overlap, so
// im2col is a pure permutation (it moves exactly the pixel bytes once, 2.4 MB a 448² BF16 tile)
// and the whole conv is one [T·G², 3P²] × [3P², C] GEMM that cuBLASLt runs near its peak with the
// bias fused in the epilogue. cuDNN would add a second library path (engine selection, its own
// workspace and numerics) for the same GEMM and no saving; keeping one GEMM path keeps one thing
// to test.
// Numerics: pixels are rounded to BF16 (HF feeds BF16 pixel_values to the BF16 conv), F32
// accumulation, BF16/F32 out.
// Parallel plan (im2col): grid-stride over the cols matrix, one element per thread, consecutive
// threads write consecutive k (coalesced writes; reads are runs of P contiguous pixels).
// Preconditions (checked): pixels BF16/F32 [T, 3, S, S] (any strides), S % P == 0; w BF16
// [C, 3, P, P] contiguous; b BF16/F32 [C]; out BF16/F32 [T, G², C] row view.
#include <cuda_runtime.h>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_detail.h"

namespace sailvl::ops::cuda {

namespace {

struct PixelView {
  int64_t s0, s1, s2, s3;  // element strides of [T, 3, S, S]
};

template <typename Pix>
__global__ void im2col_kernel(bf16* cols, const Pix* pix, PixelView v, int64_t T, int64_t G, int64_t P, int64_t Cin) {
  const int64_t Kc = Cin * P * P, n = T * G * G * Kc;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = e / Kc, k = e - row * Kc;
    const int64_t t = row / (G * G), g = row - t * G * G, gy = g / G, gx = g - gy * G;
    const int64_t ci = k / (P * P), r = k - ci * P * P, ky = r / P, kx = r - ky * P;
    const Pix p = pix[t * v.s0 + ci * v.s1 + (gy * P + ky) * v.s2 + (gx * P + kx) * v.s3];
    cols[e] = __float2bfloat16_rn(to_f32(p));
  }
}

}  // namespace

void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b) {
  constexpr const char* op = "patch_embed";
  SAILVL_CHECK(pixels.dim() == 4 && is_act_dtype(pixels.dtype()), Internal, op,
               ": pixels must be BF16/F32 [T, Cin, S, S], got ", pixels.describe());
  SAILVL_CHECK(w.dim() == 4 && w.dtype() == DType::BF16 && w.is_contiguous(), Internal, op,
               ": w must be contiguous BF16 [C, Cin, P, P], got ", w.describe());
  const int64_t T = pixels.size(0), Cin = pixels.size(1), S = pixels.size(2);
  const int64_t C = w.size(0), P = w.size(2);
  SAILVL_CHECK(pixels.size(3) == S && w.size(1) == Cin && w.size(3) == P && P > 0 && S % P == 0, Internal, op,
               ": pixels ", pixels.describe(), " do not tile with w ", w.describe());
  const int64_t G = S / P, Kc = Cin * P * P;
  SAILVL_CHECK(
      out.dim() == 3 && out.size(0) == T && out.size(1) == G * G && out.size(2) == C && is_act_dtype(out.dtype()),
      Internal, op, ": out must be BF16/F32 [", T, ", ", G * G, ", ", C, "], got ", out.describe());
  const int bias_kind = param_kind(b, op, "b");
  SAILVL_CHECK(b.dim() == 1 && b.size(0) == C && b.stride(0) == 1, Internal, op, ": b ", b.describe(),
               " must be contiguous [", C, "]");
  const RowView ov = row_view(out, op, "out");
  const int64_t rows = T * G * G;
  if (rows == 0 || C == 0) return;
  auto& ctx = Context::get(out.device().index);
  auto* cols = static_cast<bf16*>(ctx.scratch(Context::Slot::Im2col, static_cast<size_t>(rows * Kc) * sizeof(bf16)));
  const PixelView v{pixels.stride(0), pixels.stride(1), pixels.stride(2), pixels.stride(3)};
  constexpr int threads = 256;
  const unsigned grid = grid_for(rows * Kc, threads, ctx);
  if (pixels.dtype() == DType::BF16)
    im2col_kernel<<<grid, threads, 0, ctx.stream()>>>(cols, pixels.data<bf16>(), v, T, G, P, Cin);
  else
    im2col_kernel<<<grid, threads, 0, ctx.stream()>>>(cols, pixels.data<float>(), v, T, G, P, Cin);
  CUDA_CHECK_LAUNCH();
  LtCall c;
  c.device = out.device().index;
  c.M = rows;
  c.N = C;
  c.K = Kc;
  c.x = cols;
  c.ldx = Kc;
  c.w = w.raw_data();
  c.out = ov.ptr;
  c.ldo = rows > 1 ? ov.row_stride : C;
  c.out_bf16 = out.dtype() == DType::BF16;
  c.bias = b.raw_data();
  c.bias_kind = bias_kind;
  lt_matmul(c);
}

}  // namespace sailvl::ops::cuda
