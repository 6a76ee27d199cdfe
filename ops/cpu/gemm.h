// Our own F32 GEMM for the prefill / vision linears: out[M, N] = x[M, K] · w[N, K]ᵀ with F32
// activations, BF16 / F16 / F32 weights read straight from the checkpoint and F32 accumulation.
// See gemm.cpp for the blocking; linear.cpp decides when to call it (M > 4, AVX2 builds).
#pragma once

#include <cstdint>

#include "ops/cpu/cpu_util.h"
#include "ops/cpu/quant_gemv.h"

namespace sailvl::ops::cpu {

#ifdef SAILVL_CPU_AVX2
// out = x · wᵀ (no bias). w: N rows of K weights of dtype wt, row r at w + r * w_row_bytes.
// Threaded with OpenMP over column blocks of out. x, out: F32 row matrices (any row stride).
void gemm_xwt(const RowMat<const float>& x, const uint8_t* w, int64_t w_row_bytes, DType wt, const RowMat<float>& out,
              int64_t N, int64_t K);

// out = x · w'ᵀ for a quantised w (q8/q4): the same blocking, the weights unpacked to F32 (exactly
// dequantize()'s values) while packing. Threaded like gemm_xwt.
void gemm_xwt_quant(const RowMat<const float>& x, const QuantRows& w, const RowMat<float>& out);

// The same kernel on the calling thread only (for callers that parallelise outside, such as
// attention's per-head tasks), F32 operands:
//   transposed: out[M, N] = x[M, K] · w[N, K]ᵀ      otherwise: out[M, N] = x[M, K] · w[K, N]
void gemm_f32_serial(const RowMat<const float>& x, const RowMat<const float>& w, bool transposed,
                     const RowMat<float>& out);
#endif

}  // namespace sailvl::ops::cpu
