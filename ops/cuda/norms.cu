// LayerNorm and RMSNorm over the last dim, BF16 or F32 activations, F32 math.
//
// Math:
//   layer_norm: mean = Σx/D, var = Σ(x-mean)²/D (biased, two passes: no cancellation),
//               out = rnd((x - mean) · 1/sqrt(var + eps) · w + b)        (torch's fused LayerNorm)
//   rms_norm:   h = x · 1/sqrt(Σx²/D + eps) in F32, out = rnd(w · rnd(h)) (HF: cast, then × weight)
// where rnd rounds to the activation dtype (identity for F32: then both equal the CPU twins up to
// summation order). 1/sqrtf is used rather than rsqrtf so the F32 path rounds like the CPU.
// Parallel plan: one block per row (128 threads, or 256 for D > 1024); each thread strides over the
// row; block_sum combines the partial sums through shared memory. The row is re-read per pass
// (2-3 reads, served by L1/L2 for D ≤ 6144); the write is the only other DRAM traffic.
// Preconditions (checked): x/out same shape and dtype (BF16/F32), row views (last dim contiguous);
// w, b F32/BF16 contiguous [D]. out may alias x (each thread reads x[c] before writing out[c], and
// all reductions finish before the first write).
#include <cuda_runtime.h>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"

namespace sailvl::ops::cuda {

namespace {

struct NormArgs {
  void* out;
  const void* x;
  int64_t out_stride, x_stride, rows, D;
  const void* w;
  const void* b;  // layer_norm only
  int w_kind, b_kind;
  float eps;
};

template <typename T, bool kLayerNorm>
__global__ void norm_kernel(NormArgs a) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(a.x) + row * a.x_stride;
  T* out = static_cast<T*>(a.out) + row * a.out_stride;
  const float inv_d = 1.0f / static_cast<float>(a.D);
  if constexpr (kLayerNorm) {
    float s = 0;
    for (int64_t c = threadIdx.x; c < a.D; c += blockDim.x) s += to_f32(x[c]);
    const float mean = block_sum(s, red) * inv_d;
    float q = 0;
    for (int64_t c = threadIdx.x; c < a.D; c += blockDim.x) {
      const float d = to_f32(x[c]) - mean;
      q += d * d;
    }
    const float var = block_sum(q, red) * inv_d;
    const float inv = 1.0f / sqrtf(var + a.eps);
    for (int64_t c = threadIdx.x; c < a.D; c += blockDim.x) {
      const float y = (to_f32(x[c]) - mean) * inv * load_param(a.w, c, a.w_kind) + load_param(a.b, c, a.b_kind);
      out[c] = from_f32<T>(y);
    }
  } else {
    float q = 0;
    for (int64_t c = threadIdx.x; c < a.D; c += blockDim.x) {
      const float v = to_f32(x[c]);
      q += v * v;
    }
    const float var = block_sum(q, red) * inv_d;
    const float inv = 1.0f / sqrtf(var + a.eps);
    for (int64_t c = threadIdx.x; c < a.D; c += blockDim.x) {
      const float h = round_to<T>(to_f32(x[c]) * inv);
      out[c] = from_f32<T>(load_param(a.w, c, a.w_kind) * h);
    }
  }
}

template <bool kLayerNorm>
void launch(const char* op, const Tensor& out, const Tensor& x, const Tensor& w, const Tensor* b, float eps) {
  SAILVL_CHECK(is_act_dtype(out.dtype()) && x.dtype() == out.dtype(), Internal, op,
               ": out and x must share one dtype (BF16 or F32): ", out.describe(), ", ", x.describe());
  SAILVL_CHECK(out.shape() == x.shape(), Internal, op, ": shape mismatch ", out.describe(), " vs ", x.describe());
  const RowView o = row_view(out, op, "out");
  const RowView xi = row_view(x, op, "x");
  SAILVL_CHECK(o.cols > 0, Internal, op, ": empty last dim");
  NormArgs a{};
  a.out = o.ptr;
  a.x = xi.ptr;
  a.out_stride = o.row_stride;
  a.x_stride = xi.row_stride;
  a.rows = o.rows;
  a.D = o.cols;
  a.eps = eps;
  a.w_kind = param_kind(w, op, "w");
  SAILVL_CHECK(w.dim() == 1 && w.size(0) == a.D && w.stride(0) == 1, Internal, op, ": w ", w.describe(),
               " must be contiguous [", a.D, "]");
  a.w = w.raw_data();
  if (b) {
    a.b_kind = param_kind(*b, op, "b");
    SAILVL_CHECK(b->dim() == 1 && b->size(0) == a.D && b->stride(0) == 1, Internal, op, ": b ", b->describe(),
                 " must be contiguous [", a.D, "]");
    a.b = b->raw_data();
  }
  if (a.rows == 0) return;
  SAILVL_CHECK(a.rows <= 0x7fffffff, Internal, op, ": too many rows (", a.rows, ")");
  auto& ctx = Context::get(out.device().index);
  const int threads = a.D > 1024 ? 256 : 128;
  const unsigned grid = static_cast<unsigned>(a.rows);
  if (out.dtype() == DType::BF16)
    norm_kernel<bf16, kLayerNorm><<<grid, threads, 0, ctx.stream()>>>(a);
  else
    norm_kernel<float, kLayerNorm><<<grid, threads, 0, ctx.stream()>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  launch<true>("layer_norm", out, x, w, &b, eps);
}

void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
  launch<false>("rms_norm", out, x, w, nullptr, eps);
}

}  // namespace sailvl::ops::cuda
