// Rotary position embedding in place, Hugging Face Qwen2 flavour (non-interleaved halves).
//
// Math (Qwen2RotaryEmbedding + apply_rotary_pos_emb), half = Dh/2, i < half:
//   inv_freq[i] = 1 / theta^(float(2i)/Dh)      F32, computed on the host exactly as the CPU twin
//                                                does and passed by value (no per-call upload)
//   f = float(pos) · inv_freq[i];  c = rnd(cos f), s = rnd(sin f)   (cos/sin in double, rounded to
//                                                F32, then to the activation dtype as HF casts them)
//   x[i]      = rnd(rnd(a·c) - rnd(b·s))         a = x[i], b = x[i+half]
//   x[i+half] = rnd(rnd(b·c) + rnd(a·s))         (BF16 tensors: every product and the sum round)
// rnd is the identity for F32 activations; products and sums use __fmul_rn/__fadd_rn so the
// compiler cannot contract them into FMAs (the CPU twin rounds each product).
// Parallel plan: one thread per (t, h, i) pair, grid-stride; each thread reads and writes two
// elements. Memory-bound (2 reads + 2 writes per pair); the double cos/sin is per thread but the
// tensor is small (T·H·Dh/2 pairs).
// Preconditions (checked): x BF16/F32 [T, H, Dh], Dh even and ≤ 256, last dim contiguous (dims 0
// and 1 may be strided, e.g. a slice of a fused QKV output); positions I32/I64 [T] on the device.
#include <cuda_runtime.h>

#include <cmath>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"

namespace sailvl::ops::cuda {

namespace {

struct InvFreq {
  float v[128];
};

template <typename T, typename P>
__global__ void rope_kernel(T* x, int64_t s0, int64_t s1, const P* pos, int64_t pos_stride, int64_t T_, int64_t H,
                            int64_t half, InvFreq inv) {
  const int64_t n = T_ * H * half;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e % half, th = e / half, h = th % H, t = th / H;
    const float f = __fmul_rn(static_cast<float>(pos[t * pos_stride]), inv.v[i]);
    const float c = round_to<T>(static_cast<float>(cos(static_cast<double>(f))));
    const float s = round_to<T>(static_cast<float>(sin(static_cast<double>(f))));
    T* v = x + t * s0 + h * s1;
    const float a = to_f32(v[i]), b = to_f32(v[i + half]);
    const float ac = round_to<T>(__fmul_rn(a, c)), bs = round_to<T>(__fmul_rn(b, s));
    const float bc = round_to<T>(__fmul_rn(b, c)), as = round_to<T>(__fmul_rn(a, s));
    v[i] = from_f32<T>(__fsub_rn(ac, bs));
    v[i + half] = from_f32<T>(__fadd_rn(bc, as));
  }
}

}  // namespace

void rope(const Tensor& x, const Tensor& positions, double theta) {
  constexpr const char* op = "rope";
  SAILVL_CHECK(is_act_dtype(x.dtype()) && x.dim() == 3, Internal, op, ": x must be BF16/F32 [T, H, Dh], got ",
               x.describe());
  const int64_t T = x.size(0), H = x.size(1), Dh = x.size(2);
  SAILVL_CHECK(Dh % 2 == 0 && Dh > 0 && Dh <= 256, Internal, op, ": head dim must be even and <= 256, got ",
               x.describe());
  SAILVL_CHECK(x.stride(2) == 1, Internal, op, ": x needs a contiguous last dim: ", x.describe());
  SAILVL_CHECK(positions.dim() == 1 && positions.size(0) == T &&
                   (positions.dtype() == DType::I64 || positions.dtype() == DType::I32),
               Internal, op, ": positions must be I64/I32 [", T, "], got ", positions.describe());
  SAILVL_CHECK(theta > 0, Internal, op, ": theta must be positive, got ", theta);
  const int64_t half = Dh / 2;
  InvFreq inv{};
  const float theta_f = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(Dh);
    inv.v[i] = 1.0f / std::pow(theta_f, expo);
  }
  const int64_t n = T * H * half;
  if (n == 0) return;
  auto& ctx = Context::get(x.device().index);
  constexpr int threads = 256;
  const unsigned grid = grid_for(n, threads, ctx);
  const int64_t s0 = x.stride(0), s1 = x.stride(1), ps = positions.stride(0);
  auto go = [&](auto* xp) {
    if (positions.dtype() == DType::I64)
      rope_kernel<<<grid, threads, 0, ctx.stream()>>>(xp, s0, s1, positions.data<int64_t>(), ps, T, H, half, inv);
    else
      rope_kernel<<<grid, threads, 0, ctx.stream()>>>(xp, s0, s1, positions.data<int32_t>(), ps, T, H, half, inv);
  };
  if (x.dtype() == DType::BF16)
    go(x.data<bf16>());
  else
    go(x.data<float>());
  CUDA_CHECK_LAUNCH();
}

}  // namespace sailvl::ops::cuda
