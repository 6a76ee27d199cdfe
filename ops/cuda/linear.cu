// linear: out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N]), BF16 inputs, F32 accumulation, BF16 or F32 out.
//
// Two paths, chosen per call:
//  * M > 4 (prefill, vision): cuBLASLt, BF16 A/B, CUBLAS_COMPUTE_32F, BF16/F32 D, the bias added in
//    the epilogue (CUBLASLT_EPILOGUE_BIAS) when its dtype equals the output's (cuBLASLt's rule), else
//    by bias_add_kernel after. Row-major out = x·wᵀ is column-major outᵀ[N, M] = w(K×N col-major)ᵀ ·
//    xᵀ(K×M col-major): transa = T, transb = N, m = N, n = M, k = K, lda = K, ldb = ldx, ldd = ldo.
//    A plan (descriptors + the heuristic's first algorithm) is cached per shape, leading dims, dtypes
//    and pointer alignment, so the steady state makes no heuristic queries.
//  * M ≤ 4 (decode): gemv_kernel, memory-bound. Each row of w is read once with 16-byte loads
//    (8 BF16); a thread keeps U = 4 loads in flight before its first FMA; x (M ≤ 4 rows of K BF16) is
//    re-read through L1 by every row group. A block of 256 threads owns R ∈ {8,4,2,1} rows and each
//    row is split across 256/R threads (the split-K that narrow matrices need: N = 256 for the
//    Qwen2.5-1.5B K/V projections gives R = 1, 256 blocks of 8 warps). R is the largest value that
//    still gives ≥ 2 blocks per SM. Partial sums: warp shuffles, then shared memory across the
//    warps of a row. Bytes per call ≈ 2·N·K (the weights), so at 3.35 TB/s an 8960×1536 matrix is
//    8.2 µs.
// Preconditions (checked): x BF16 row view [.., K] (contiguous last dim, one row stride); w BF16
// [N, K] contiguous; out BF16/F32 row view [.., N] with as many rows as x; bias BF16/F32 contiguous
// [N]. The GEMV needs K % 8 == 0 and 16-byte aligned rows of x and w; otherwise cuBLASLt runs.
#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_detail.h"

namespace sailvl::ops::cuda {

namespace {

constexpr int kGemvThreads = 256;
constexpr int kGemvUnroll = 4;

struct GemvArgs {
  const bf16* x;
  int64_t ldx;
  const bf16* w;  // [N, K]
  void* out;
  int64_t ldo;
  const void* bias;
  int bias_kind;  // -1 none, 0 F32, 1 BF16
  int64_t N, K;
  int rows_per_block;
};

__device__ __forceinline__ void fma8(float& acc, const uint4& w, const uint4& x) {
  const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 wf = __bfloat1622float2(wp[q]);
    const float2 xf = __bfloat1622float2(xp[q]);
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
}

template <int M, typename Out>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(GemvArgs a) {
  __shared__ float red[kGemvThreads / 32][M];
  const int tpr = kGemvThreads / a.rows_per_block;  // threads per row, a multiple of 32
  const int local = threadIdx.x % tpr;
  const int64_t n = blockIdx.x * int64_t{a.rows_per_block} + threadIdx.x / tpr;
  const bool active = n < a.N;
  const int64_t chunks = a.K / 8;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  if (active) {
    const uint4* wrow = reinterpret_cast<const uint4*>(a.w + n * a.K);
    for (int64_t c0 = local; c0 < chunks; c0 += int64_t{tpr} * kGemvUnroll) {
      uint4 wv[kGemvUnroll];
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int64_t c = c0 + int64_t{u} * tpr;
        wv[u] = c < chunks ? __ldcs(wrow + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        const int64_t c = c0 + int64_t{u} * tpr;
        if (c < chunks) {
#pragma unroll
          for (int m = 0; m < M; ++m) {
            const uint4 xv = __ldg(reinterpret_cast<const uint4*>(a.x + m * a.ldx) + c);
            fma8(acc[m], wv[u], xv);
          }
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = warp_sum(acc[m]);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wpr = tpr / 32;
  if (wpr > 1) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < M; ++m) red[warp][m] = acc[m];
    }
    __syncthreads();
    if (local == 0) {
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float s = 0;
        for (int j = 0; j < wpr; ++j) s += red[warp + j][m];
        acc[m] = s;
      }
    }
  }
  if (active && local == 0) {
    const float b = a.bias_kind < 0 ? 0.f : load_param(a.bias, n, a.bias_kind);
#pragma unroll
    for (int m = 0; m < M; ++m) static_cast<Out*>(a.out)[m * a.ldo + n] = from_f32<Out>(acc[m] + b);
  }
}

template <typename Out>
__global__ void bias_add_kernel(Out* out, int64_t ldo, const void* bias, int bias_kind, int64_t M, int64_t N) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < M * N; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t m = e / N, n = e - m * N;
    Out* p = out + m * ldo + n;
    *p = from_f32<Out>(to_f32(*p) + load_param(bias, n, bias_kind));
  }
}

template <int M>
void launch_gemv_m(const GemvArgs& a, bool out_bf16, unsigned grid, cudaStream_t s) {
  if (out_bf16)
    gemv_kernel<M, bf16><<<grid, kGemvThreads, 0, s>>>(a);
  else
    gemv_kernel<M, float><<<grid, kGemvThreads, 0, s>>>(a);
}

// ---- cuBLASLt plans ----

using MatmulDesc = sailvl::cuda::Handle<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using MatrixLayout = sailvl::cuda::Handle<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using MatmulPref = sailvl::cuda::Handle<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

struct LtPlan {
  MatmulDesc desc;
  MatrixLayout a, b, d;
  cublasLtMatmulAlgo_t algo{};
};

using LtKey = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int, bool, int, int, int>;

uint32_t alignment_of(const void* p, int64_t ld_bytes) {
  uint32_t al = 256;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (al > 1 && ((addr % al) != 0 || (ld_bytes % al) != 0)) al >>= 1;
  return al;
}

MatrixLayout make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  return MatrixLayout(l);
}

const LtPlan& lt_plan(Context& ctx, const LtKey& key, int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldo,
                      bool out_bf16, bool epi_bias, uint32_t al_x, uint32_t al_w, uint32_t al_o) {
  static std::mutex mu;
  static auto* cache = new std::map<LtKey, LtPlan>;  // leaked on purpose: outlives static tensors
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  LtPlan p;
  cublasLtMatmulDesc_t d;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  p.desc = MatmulDesc(d);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epi = epi_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  const cudaDataType_t dt = out_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  p.a = make_layout(CUDA_R_16BF, K, N, K);    // w as column-major K×N, used transposed
  p.b = make_layout(CUDA_R_16BF, K, M, ldx);  // x as column-major K×M
  p.d = make_layout(dt, N, M, ldo);           // out as column-major N×M
  cublasLtMatmulPreference_t pr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pr));
  MatmulPref pref(pr);
  const uint64_t ws = ctx.lt_workspace_bytes();
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_w, sizeof(al_w)));
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_x, sizeof(al_x)));
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_o, sizeof(al_o)));
  CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pr, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_o, sizeof(al_o)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt(), d, p.a, p.b, p.d, p.d, pr, 1, &res, &found));
  SAILVL_CHECK(found > 0, Cuda, "linear: cuBLASLt has no algorithm for M=", M, " N=", N, " K=", K, " (ldx ", ldx,
               ", ldo ", ldo, ")");
  p.algo = res.algo;
  return cache->emplace(key, std::move(p)).first->second;
}

}  // namespace

void lt_matmul(const LtCall& c) {
  auto& ctx = Context::get(c.device);
  const uint32_t al_x = alignment_of(c.x, c.ldx * 2), al_w = alignment_of(c.w, c.K * 2),
                 al_o = alignment_of(c.out, c.ldo * (c.out_bf16 ? 2 : 4));
  const bool epi_bias = c.bias != nullptr && c.bias_kind == (c.out_bf16 ? 1 : 0);
  const LtKey key{ctx.device(),
                  c.M,
                  c.N,
                  c.K,
                  c.ldx,
                  c.ldo,
                  c.out_bf16 ? 1 : 0,
                  epi_bias,
                  static_cast<int>(al_x),
                  static_cast<int>(al_w),
                  static_cast<int>(al_o)};
  const LtPlan& p = lt_plan(ctx, key, c.M, c.N, c.K, c.ldx, c.ldo, c.out_bf16, epi_bias, al_x, al_w, al_o);
  if (epi_bias)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &c.bias, sizeof(c.bias)));
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt(), p.desc, &alpha, c.w, p.a, c.x, p.b, &beta, c.out, p.d, c.out, p.d, &p.algo,
                              ctx.lt_workspace(), ctx.lt_workspace_bytes(), ctx.stream()));
  sailvl::cuda::count_launches();  // one library call (cuda::launches counts it as one launch)
  if (c.bias && !epi_bias) {
    constexpr int threads = 256;
    const unsigned grid = grid_for(c.M * c.N, threads, ctx);
    if (c.out_bf16)
      bias_add_kernel<<<grid, threads, 0, ctx.stream()>>>(static_cast<bf16*>(c.out), c.ldo, c.bias, c.bias_kind, c.M,
                                                          c.N);
    else
      bias_add_kernel<<<grid, threads, 0, ctx.stream()>>>(static_cast<float*>(c.out), c.ldo, c.bias, c.bias_kind, c.M,
                                                          c.N);
    CUDA_CHECK_LAUNCH();
  }
}

void linear(const Tensor& out, const Tensor& x, const Tensor& w, const std::optional<Tensor>& bias) {
  constexpr const char* op = "linear";
  SAILVL_CHECK(x.dtype() == DType::BF16 && w.dtype() == DType::BF16, Internal, op,
               ": CUDA linear takes BF16 x and w, got ", x.describe(), " and ", w.describe());
  SAILVL_CHECK(is_act_dtype(out.dtype()), Internal, op, ": out must be BF16/F32, got ", out.describe());
  SAILVL_CHECK(w.dim() == 2 && w.is_contiguous(), Internal, op, ": w must be contiguous [N, K], got ", w.describe());
  const int64_t N = w.size(0), K = w.size(1);
  const RowView xv = row_view(x, op, "x");
  const RowView ov = row_view(out, op, "out");
  SAILVL_CHECK(xv.cols == K && ov.cols == N && xv.rows == ov.rows, Internal, op, ": shapes do not match: out ",
               out.describe(), ", x ", x.describe(), ", w ", w.describe());
  int bias_kind = -1;
  const void* bp = nullptr;
  if (bias) {
    bias_kind = param_kind(*bias, op, "bias");
    SAILVL_CHECK(bias->dim() == 1 && bias->size(0) == N && bias->stride(0) == 1, Internal, op, ": bias ",
                 bias->describe(), " must be contiguous [", N, "]");
    bp = bias->raw_data();
  }
  const int64_t M = xv.rows;
  if (M == 0 || N == 0) return;
  SAILVL_CHECK(K > 0, Internal, op, ": K = 0");
  const int64_t ldx = M > 1 ? xv.row_stride : K, ldo = M > 1 ? ov.row_stride : N;
  auto& ctx = Context::get(out.device().index);
  const bool out_bf16 = out.dtype() == DType::BF16;
  const bool gemv_ok = M <= 4 && K % 8 == 0 && ldx % 8 == 0 && reinterpret_cast<uintptr_t>(xv.ptr) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(w.raw_data()) % 16 == 0;
  if (gemv_ok) {
    GemvArgs a{};
    a.x = static_cast<const bf16*>(xv.ptr);
    a.ldx = ldx;
    a.w = w.data<bf16>();
    a.out = ov.ptr;
    a.ldo = ldo;
    a.bias = bp;
    a.bias_kind = bias_kind;
    a.N = N;
    a.K = K;
    a.rows_per_block = 8;
    while (a.rows_per_block > 1 && (N + a.rows_per_block - 1) / a.rows_per_block < 2 * int64_t{ctx.sm_count()})
      a.rows_per_block /= 2;
    const int64_t blocks = (N + a.rows_per_block - 1) / a.rows_per_block;
    SAILVL_CHECK(blocks <= 0x7fffffff, Internal, op, ": N too large (", N, ")");
    const unsigned grid = static_cast<unsigned>(blocks);
    switch (M) {
      case 1: launch_gemv_m<1>(a, out_bf16, grid, ctx.stream()); break;
      case 2: launch_gemv_m<2>(a, out_bf16, grid, ctx.stream()); break;
      case 3: launch_gemv_m<3>(a, out_bf16, grid, ctx.stream()); break;
      default: launch_gemv_m<4>(a, out_bf16, grid, ctx.stream()); break;
    }
    CUDA_CHECK_LAUNCH();
    return;
  }
  LtCall c;
  c.device = out.device().index;
  c.M = M;
  c.N = N;
  c.K = K;
  c.x = xv.ptr;
  c.ldx = ldx;
  c.w = w.raw_data();
  c.out = ov.ptr;
  c.ldo = ldo;
  c.out_bf16 = out_bf16;
  c.bias = bp;
  c.bias_kind = bias_kind;
  lt_matmul(c);
}

}  // namespace sailvl::ops::cuda
