// Backend-internal: the CPU kernels behind ops::linear for quantised weights (ops/quant.h).
//   quant_gemv       decode, M <= 4 rows of x (ops/cpu/quant_gemv.cpp)
//   gemm_xwt_quant   M > 4: the packed GEMM with q8/q4 unpacking in its weight packing (gemm.cpp)
//   dequant_row      one row range as F32 (the portable GEMM fallback and the tests)
#pragma once

#include <cstdint>

#include "ops/cpu/cpu_util.h"
#include "ops/quant.h"

namespace sailvl::ops::cpu {

// A quantised weight as raw pointers (checked by quant_rows). Row n: codes at
// codes + n * code_stride bytes, scales (F16) at scale + n * scale_stride elements, zeros likewise
// (asymmetric q4 only, else nullptr). K % group == 0 and group % 32 == 0.
struct QuantRows {
  QuantType type = QuantType::None;
  int64_t N = 0, K = 0, group = 0;
  const uint8_t* codes = nullptr;
  int64_t code_stride = 0;
  const uint16_t* scale = nullptr;
  const uint16_t* zero = nullptr;
  int64_t scale_stride = 0;
};

// Checks w (ErrorKind::Internal naming `op`): a CPU q8/q4 weight with I8/U8 codes and F16 scales
// [N, K/G] (and zeros) with contiguous rows, G a positive multiple of 32, K % G == 0.
QuantRows quant_rows(const Weight& w, const char* op);

// out[m, n] = Σ_k x[m, k] · w'[n, k] for M = x.rows <= 4 (threads split the N rows).
void quant_gemv(const RowMat<const float>& x, const QuantRows& w, const RowMat<float>& out);

// dst[i] = w'[n, k0 + i] for i < len (exact: the values dequantize() gives).
void dequant_row(const QuantRows& w, int64_t n, int64_t k0, int64_t len, float* dst);

// The instruction set the GEMV runs: chosen at start-up from what the CPU reports
// (__builtin_cpu_supports), AVX-512 only with runtime support. Tests force each supported one.
enum class QuantIsa : uint8_t { Scalar, Avx2, Avx512 };
const char* quant_isa_name(QuantIsa isa);
QuantIsa quant_isa_best();         // the best this build and CPU support
QuantIsa quant_isa();              // the one in use
void set_quant_isa(QuantIsa isa);  // for tests and benchmarks; must be <= quant_isa_best() (Internal)

}  // namespace sailvl::ops::cpu
