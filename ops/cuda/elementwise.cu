// Elementwise ops on BF16 or F32 activations: gelu_erf, silu_mul, add, add_scaled.
//
// Math (per element, F32 inside, with Hugging Face's BF16 rounding points; for F32 tensors every
// rounding below is the identity and the result equals the CPU twin's):
//   gelu_erf   out = x/2 · (1 + erf(x/√2))                 one rounding (torch's GELU kernel is fused)
//   silu_mul   out = rnd(rnd(g / (1 + e^-g)) · u)           act_fn(gate) is a tensor, then · up
//   add        out = rnd(a + b)
//   add_scaled out = rnd(a + rnd(s[c] · b))                  `h + ls * y`: the product is a tensor
// Parallel plan: every tensor is a row view (rows × cols, last dim contiguous, one row stride, so a
// slice of a fused output or a KV-cache prefix works); a grid-stride loop over rows·cols with one
// element per thread per step. Memory-bound: 2–3 reads + 1 write of 2 bytes (BF16) per element.
// The division by cols per element is cheap next to the DRAM traffic.
// Preconditions (checked, ErrorKind::Internal): same shape, all activations the same dtype (BF16 or
// F32), s F32/BF16 [cols]. out may alias an input (each element is read before it is written by
// the same thread).
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"

namespace sailvl::ops::cuda {

namespace {

struct Rows {
  void* p;
  int64_t stride;
};

template <typename T>
__device__ __forceinline__ T* at(const Rows& v, int64_t r, int64_t c) {
  return static_cast<T*>(v.p) + r * v.stride + c;
}

enum class Kind { Gelu, SiluMul, Add, AddScaled };

template <typename T, Kind K>
__global__ void elementwise_kernel(Rows out, Rows a, Rows b, const void* s, int s_kind, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const float x = to_f32(*at<const T>(a, r, c));
    float y;
    if constexpr (K == Kind::Gelu) {
      y = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    } else if constexpr (K == Kind::SiluMul) {
      const float act = round_to<T>(x / (1.0f + expf(-x)));
      y = act * to_f32(*at<const T>(b, r, c));
    } else if constexpr (K == Kind::Add) {
      y = x + to_f32(*at<const T>(b, r, c));
    } else {
      y = x + round_to<T>(load_param(s, c, s_kind) * to_f32(*at<const T>(b, r, c)));
    }
    *at<T>(out, r, c) = from_f32<T>(y);
  }
}

// The same, 8 BF16 per thread through 16-byte loads and stores (cols % 8 == 0, rows 16-byte
// aligned): these ops are pure bandwidth, and the scalar version moves 2 bytes per access.
template <Kind K>
__global__ void elementwise_bf16x8_kernel(Rows out, Rows a, Rows b, const void* s, int s_kind, int64_t rows,
                                          int64_t cols) {
  const int64_t c8 = cols / 8, n = rows * c8;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / c8, c = (i - r * c8) * 8;
    const uint4 ua = *reinterpret_cast<const uint4*>(at<const bf16>(a, r, c));
    uint4 ub = make_uint4(0, 0, 0, 0);
    if constexpr (K != Kind::Gelu) ub = *reinterpret_cast<const uint4*>(at<const bf16>(b, r, c));
    const auto* xa = reinterpret_cast<const bf16*>(&ua);
    const auto* xb = reinterpret_cast<const bf16*>(&ub);
    uint4 uo;
    auto* xo = reinterpret_cast<bf16*>(&uo);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float x = to_f32(xa[e]);
      float y;
      if constexpr (K == Kind::Gelu) {
        y = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
      } else if constexpr (K == Kind::SiluMul) {
        y = round_to<bf16>(x / (1.0f + expf(-x))) * to_f32(xb[e]);
      } else if constexpr (K == Kind::Add) {
        y = x + to_f32(xb[e]);
      } else {
        y = x + round_to<bf16>(load_param(s, c + e, s_kind) * to_f32(xb[e]));
      }
      xo[e] = from_f32<bf16>(y);
    }
    *reinterpret_cast<uint4*>(at<bf16>(out, r, c)) = uo;
  }
}

bool vec8_ok(const RowView& v) {
  return v.ptr == nullptr || (reinterpret_cast<uintptr_t>(v.ptr) % 16 == 0 && v.row_stride % 8 == 0);
}

template <Kind K>
void launch(const char* op, const Tensor& out, const Tensor& a, const Tensor* b, const Tensor* s) {
  SAILVL_CHECK(is_act_dtype(out.dtype()) && a.dtype() == out.dtype() && (!b || b->dtype() == out.dtype()), Internal, op,
               ": activations must share one dtype (BF16 or F32): out ", out.describe(), ", a ", a.describe(),
               b ? ", b " + b->describe() : std::string());
  SAILVL_CHECK(a.shape() == out.shape() && (!b || b->shape() == out.shape()), Internal, op, ": shape mismatch ",
               out.describe(), " vs ", a.describe(), b ? " vs " + b->describe() : std::string());
  const RowView o = row_view(out, op, "out");
  const RowView x = row_view(a, op, "a");
  const RowView y = b ? row_view(*b, op, "b") : RowView{};
  int s_kind = 0;
  const void* sp = nullptr;
  if (s) {
    s_kind = param_kind(*s, op, "s");
    SAILVL_CHECK(s->dim() == 1 && s->size(0) == o.cols && s->stride(0) == 1, Internal, op, ": s ", s->describe(),
                 " must be contiguous [", o.cols, "]");
    sp = s->raw_data();
  }
  const int64_t n = o.rows * o.cols;
  if (n == 0) return;
  auto& ctx = Context::get(out.device().index);
  constexpr int threads = 256;
  const unsigned grid = grid_for(n, threads, ctx);
  const Rows ro{o.ptr, o.row_stride}, ra{x.ptr, x.row_stride}, rb{y.ptr, y.row_stride};
  if (out.dtype() == DType::BF16 && o.cols % 8 == 0 && vec8_ok(o) && vec8_ok(x) && vec8_ok(y))
    elementwise_bf16x8_kernel<K>
        <<<grid_for(n / 8, threads, ctx), threads, 0, ctx.stream()>>>(ro, ra, rb, sp, s_kind, o.rows, o.cols);
  else if (out.dtype() == DType::BF16)
    elementwise_kernel<bf16, K><<<grid, threads, 0, ctx.stream()>>>(ro, ra, rb, sp, s_kind, o.rows, o.cols);
  else
    elementwise_kernel<float, K><<<grid, threads, 0, ctx.stream()>>>(ro, ra, rb, sp, s_kind, o.rows, o.cols);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void gelu_erf(const Tensor& out, const Tensor& x) { launch<Kind::Gelu>("gelu_erf", out, x, nullptr, nullptr); }
void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) {
  launch<Kind::SiluMul>("silu_mul", out, gate, &up, nullptr);
}
void add(const Tensor& out, const Tensor& a, const Tensor& b) { launch<Kind::Add>("add", out, a, &b, nullptr); }
void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b) {
  launch<Kind::AddScaled>("add_scaled", out, a, &b, &s);
}

}  // namespace sailvl::ops::cuda
