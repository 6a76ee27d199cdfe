// Backend-internal: the raw cuBLASLt GEMM behind ops::cuda::linear, also used by patch_embed
// (on its im2col buffer) and by the benchmark's GEMM probe.
//   out[M, N] (row stride ldo) = x[M, K] (row stride ldx) · w[N, K]ᵀ (+ bias[N]); x, w BF16.
#pragma once

#include <cstdint>

namespace sailvl::ops::cuda {

struct LtCall {
  int device = 0;
  int64_t M = 0, N = 0, K = 0;
  const void* x = nullptr;
  int64_t ldx = 0;
  const void* w = nullptr;  // [N, K] contiguous
  void* out = nullptr;
  int64_t ldo = 0;
  bool out_bf16 = true;        // else F32
  const void* bias = nullptr;  // optional [N]
  int bias_kind = -1;          // 0 F32, 1 BF16
};

// Runs on Context::get(device).stream(). Throws ErrorKind::Cuda on a cuBLASLt failure.
void lt_matmul(const LtCall& c);

}  // namespace sailvl::ops::cuda
