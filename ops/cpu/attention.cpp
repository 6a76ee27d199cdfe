// Scaled dot-product attention with grouped KV heads (GQA), causal or bidirectional, F32.
//
// Math, for query row t, query head h, kv head g = h / (H/Hkv):
//   s_j   = scale · q[t,h,:] · k[j,g,:]           j < S,  scale = 1/sqrt(Dh) unless given
//   s_j   = -inf  where causal and j > q_offset + t
//   p     = softmax(s) = exp(s - max s) / Σ exp(s - max s)      (F32, max subtracted)
//   out[t,h,:] = Σ_j p_j · v[j,g,:]
//
// Parallel plan: one task = (kv head g, tile of query rows [t0, t0+nt)). The r = H/Hkv query heads
// that share g are stacked into one block of r·nt query rows, so each K/V row loaded is used by all
// of them (the 6:1 / 7:1 GQA of Qwen2.5 makes decode a [r, Dh]·[Dh, S] product instead of r
// GEMVs). Per task, with per-thread scratch reused across calls:
//   Sc[r·nt, S'] = Q_blk · K[0:S', g]ᵀ       GEMM (S' = visible keys of the tile's last row)
//   row-wise masked softmax in place (scale applied here, as HF scales q·kᵀ; AVX2 exp)
//   O[r·nt, Dh]  = P · V[0:S', g]            GEMM, then scattered to out
// (both GEMMs: gemm.cpp's packed kernel on the task's thread in AVX2 builds, Eigen otherwise)
// nt = max(1, 64 / r) (128 / r bidirectional) keeps the score block at 64-128 rows: a 3328-token
// prefill needs 64·3328 floats per thread, never an [H, T, S] buffer. Tasks are scheduled
// dynamically (causal tiles differ in cost).
// Decode (T = 1) has Hkv tasks; with 2 threads and Hkv >= 2 that fills the machine (a sequence-split
// "flash-decoding" variant would be needed to use more threads than KV heads).
//
// Preconditions: q, out F32 [T, H, Dh]; k, v F32 [S, Hkv, Dh]; last dims contiguous, dims 0 and 1 any
// stride (so a KV-cache prefix narrowed on dim 0, or q/k/v slices of a fused QKV output, are read in
// place); H % Hkv == 0; q_offset >= 0. out must not overlap q, k or v.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/limits.h"

namespace sailvl::ops::cpu {

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMapRM = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;
using MapRM = Eigen::Map<RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

// Query rows per task (ops/cpu/limits.h, which the memory plan reads too).
constexpr int64_t kTargetRowsCausal = kAttnRowsCausal, kTargetRowsFull = kAttnRowsFull;

struct View3 {  // [n0, n1, Dh] with last dim contiguous
  float* p;
  int64_t n0, n1, d, s0, s1;
  float* at(int64_t i, int64_t j) const { return p + i * s0 + j * s1; }
};

// s[0, n) <- softmax(scale · s[0, n)), max subtracted, F32; the exponential is the AVX2 exp8 of
// cpu_util.h (~2 ulp) on full 8-lane blocks and std::exp on the tail.
void softmax_row(float* s, int64_t n, float scale) {
  int64_t j = 0;
  float mx = -std::numeric_limits<float>::infinity();
#ifdef SAILVL_CPU_AVX2
  const __m256 vs = _mm256_set1_ps(scale);
  __m256 vm = _mm256_set1_ps(mx);
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + j), vs);
    _mm256_storeu_ps(s + j, v);
    vm = _mm256_max_ps(vm, v);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, vm);
  for (float l : lanes) mx = std::max(mx, l);
#endif
  for (; j < n; ++j) {
    s[j] *= scale;
    mx = std::max(mx, s[j]);
  }
  float sum = 0;
  j = 0;
#ifdef SAILVL_CPU_AVX2
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  _mm256_storeu_ps(lanes, acc);
  for (float l : lanes) sum += l;
#endif
  for (; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  for (j = 0; j < n; ++j) s[j] *= inv;
}

View3 view3(const Tensor& t, const char* op, const char* what) {
  check_dtype(t, DType::F32, op, what);
  SAILVL_OP_CHECK(t.device().is_cpu() && t.dim() == 3, op, what, " must be CPU [n, heads, Dh], got ", t.describe());
  SAILVL_OP_CHECK(t.size(2) <= 1 || t.stride(2) == 1, op, what, " needs a contiguous last dim, got ", t.describe(),
                  " strides ", shape_str(t.strides()));
  return View3{t.data<float>(), t.size(0), t.size(1), t.size(2), t.stride(0), t.stride(1)};
}

}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  constexpr const char* op = "attention";
  if (p.batch != 1) {  // one sequence at a time: the kernel below parallelises within a sequence
    SAILVL_OP_CHECK(p.batch > 1 && q.dim() == 3 && k.dim() == 3 && q.size(0) % p.batch == 0 &&
                        k.size(0) % p.batch == 0 && out.dim() == 3 && out.size(0) == q.size(0),
                    op, "batch ", p.batch, " does not divide q ", q.describe(), " and k ", k.describe());
    const int64_t T = q.size(0) / p.batch, S = k.size(0) / p.batch;
    AttentionParams one = p;
    one.batch = 1;
    for (int64_t b = 0; b < p.batch; ++b)
      cpu::attention(out.narrow(0, b * T, T), q.narrow(0, b * T, T), k.narrow(0, b * S, S), v.narrow(0, b * S, S), one);
    return;
  }
  const View3 Q = view3(q, op, "q"), K = view3(k, op, "k"), V = view3(v, op, "v"), O = view3(out, op, "out");
  const int64_t T = Q.n0, H = Q.n1, Dh = Q.d, S = K.n0, Hkv = K.n1;
  SAILVL_OP_CHECK(O.n0 == T && O.n1 == H && O.d == Dh, op, "out ", out.describe(), " must match q ", q.describe());
  SAILVL_OP_CHECK(V.n0 == S && V.n1 == Hkv && V.d == Dh && K.d == Dh, op, "k ", k.describe(), " / v ", v.describe(),
                  " do not match q ", q.describe());
  SAILVL_OP_CHECK(Hkv > 0 && H % Hkv == 0, op, "query heads ", H, " not a multiple of kv heads ", Hkv);
  SAILVL_OP_CHECK(p.q_offset >= 0, op, "negative q_offset ", p.q_offset);
  SAILVL_OP_CHECK(S > 0 || T == 0, op, "no keys");
  if (T == 0 || H == 0 || Dh == 0) return;

  const int64_t r = H / Hkv;
  const float scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(Dh));
  const int64_t target = p.causal ? kTargetRowsCausal : kTargetRowsFull;
  const int64_t nt_max = std::min(T, std::max<int64_t>(1, target / r));
  const int64_t tiles = (T + nt_max - 1) / nt_max;
  const int64_t tasks = Hkv * tiles;

  // The per-thread score buffers grow with the keys; an allocation failure inside the parallel
  // region must not escape it (that would terminate the process): it is caught there and rethrown
  // after, as the std::bad_alloc the CLI turns into "out of memory" (exit 6).
  std::atomic<bool> failed{false};
#pragma omp parallel if (tasks > 1)
  {
    static thread_local std::vector<float> qs, sc, os;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t g = task / tiles, t0 = (task % tiles) * nt_max, nt = std::min(nt_max, T - t0);
      const int64_t rows = r * nt;
      const int64_t s_vis = p.causal ? std::min(S, p.q_offset + t0 + nt) : S;
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        if (qs.size() < static_cast<size_t>(rows * Dh)) qs.resize(static_cast<size_t>(rows * Dh));
        if (os.size() < static_cast<size_t>(rows * Dh)) os.resize(static_cast<size_t>(rows * Dh));
        if (sc.size() < static_cast<size_t>(rows * s_vis)) sc.resize(static_cast<size_t>(rows * s_vis));
      } catch (const std::bad_alloc&) {
        failed = true;
        continue;
      }

      // Stack the group's query rows: block row j·nt + i is (token t0+i, head g·r+j).
      for (int64_t j = 0; j < r; ++j)
        for (int64_t i = 0; i < nt; ++i) std::copy_n(Q.at(t0 + i, g * r + j), Dh, qs.data() + (j * nt + i) * Dh);

#ifdef SAILVL_CPU_AVX2
      const RowMat<const float> Qb{qs.data(), rows, Dh, Dh};
      const RowMat<const float> Kg{K.at(0, g), s_vis, Dh, K.s0}, Vg{V.at(0, g), s_vis, Dh, V.s0};
      gemm_f32_serial(Qb, Kg, /*transposed=*/true, RowMat<float>{sc.data(), rows, s_vis, s_vis});
#else
      const ConstMapRM Qb(qs.data(), rows, Dh, Eigen::OuterStride<>(Dh));
      const ConstMapRM Kg(K.at(0, g), s_vis, Dh, Eigen::OuterStride<>(K.s0));
      const ConstMapRM Vg(V.at(0, g), s_vis, Dh, Eigen::OuterStride<>(V.s0));
      MapRM Sc(sc.data(), rows, s_vis, Eigen::OuterStride<>(s_vis));
      Sc.noalias() = Qb * Kg.transpose();
#endif

      for (int64_t row = 0; row < rows; ++row) {
        const int64_t i = row % nt;
        const int64_t lim = p.causal ? std::min(s_vis, p.q_offset + t0 + i + 1) : s_vis;
        float* s = sc.data() + row * s_vis;
        softmax_row(s, lim, scale);
        std::fill(s + lim, s + s_vis, 0.0f);
      }

#ifdef SAILVL_CPU_AVX2
      gemm_f32_serial(RowMat<const float>{sc.data(), rows, s_vis, s_vis}, Vg, /*transposed=*/false,
                      RowMat<float>{os.data(), rows, Dh, Dh});
#else
      MapRM Ob(os.data(), rows, Dh, Eigen::OuterStride<>(Dh));
      Ob.noalias() = Sc * Vg;
#endif
      for (int64_t j = 0; j < r; ++j)
        for (int64_t i = 0; i < nt; ++i) std::copy_n(os.data() + (j * nt + i) * Dh, Dh, O.at(t0 + i, g * r + j));
    }
  }
  if (failed) throw std::bad_alloc();
}

}  // namespace sailvl::ops::cpu
