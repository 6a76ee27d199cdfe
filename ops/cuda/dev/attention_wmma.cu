// The first prefill attention kernel (WMMA), kept outside the product as a cross-check of the
// production mma.sync kernel (ops/cuda/attention.cu): the CUDA op tests run both on the same
// cases, and bench_ops_cuda times it with SAILVL_CUDA_ATTENTION=wmma. Same math as the production kernel.
//
// Flash-style tiling with tensor cores through WMMA (BF16 16×16×16, F32 accumulate):
//   Block = 4 warps, 64 query rows of one head (16 rows per warp); key tiles of 64 rows. Per tile:
//   S_w = Q_w·K_tileᵀ (WMMA, F32 in shared memory) -> online softmax by two lanes per row (running
//   max m and sum l in registers; P rounded to BF16 into shared memory, l sums the rounded P so the
//   result is a convex combination of v rows) -> the F32 output tile O_w (kept in shared memory,
//   rescaled by exp(m_old - m_new)) += P_w·V_tile (WMMA). K/V tiles are loaded once per block with
//   16-byte loads and shared by the 4 warps; rows past S (and past T for Q) are zero-filled so no
//   garbage reaches a product. Causal blocks stop at their last visible key tile.
//   Shared memory (Dh = 128): Q 17 KB, K 17 KB, V 17 KB, S 17 KB, P 9 KB, O 34 KB = 113 KB (opt-in).
//   Traffic: Q and O once, K/V once per 64-query block (L2-resident at these sizes).
#include <mma.h>

#include <algorithm>

#include "ops/cuda/attention_detail.cuh"
#include "ops/cuda/dev/attention_wmma.h"

namespace sailvl::ops::cuda::dev {

namespace {

using namespace attention_detail;
namespace wmma = nvcuda::wmma;

template <int D>
struct Prefill {
  static constexpr int kWarps = 4, BQ = 16 * kWarps, BK = 64;
  static constexpr int LDQ = D + 8, LDK = D + 8, LDV = D + 8;  // BF16 elements (ldm % 8 == 0)
  static constexpr int LDS = BK + 4, LDO = D + 4;              // F32 elements (ldm % 4 == 0)
  static constexpr int LDP = BK + 8;                           // BF16 elements
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + size_t{BQ} * LDQ * 2;
  static constexpr size_t kV = kK + size_t{BK} * LDK * 2;
  static constexpr size_t kS = kV + size_t{BK} * LDV * 2;
  static constexpr size_t kP = kS + size_t{kWarps} * 16 * LDS * 4;
  static constexpr size_t kO = kP + size_t{kWarps} * 16 * LDP * 2;
  static constexpr size_t kBytes = kO + size_t{kWarps} * 16 * LDO * 4;
  // Every WMMA pointer must be 32-byte aligned: section starts and 16-row warp slices are.
  static_assert(kK % 32 == 0 && kV % 32 == 0 && kS % 32 == 0 && kP % 32 == 0 && kO % 32 == 0);
  static_assert((16 * LDQ * 2) % 32 == 0 && (16 * LDS * 4) % 32 == 0 && (16 * LDP * 2) % 32 == 0 &&
                (16 * LDO * 4) % 32 == 0 && (16 * LDK * 2) % 32 == 0);
};

// Copies `rows` rows of D BF16 (row r at src + r*stride) into shared memory with leading dim ld,
// zero-filling rows >= valid. 16-byte chunks, all threads of the block.
template <int D>
__device__ __forceinline__ void load_tile(bf16* dst, int ld, const bf16* src, int64_t stride, int rows, int64_t valid) {
  constexpr int kChunks = D / 8;
  for (int e = threadIdx.x; e < rows * kChunks; e += blockDim.x) {
    const int r = e / kChunks, c = e % kChunks;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r < valid) val = *reinterpret_cast<const uint4*>(src + r * stride + c * 8);
    *reinterpret_cast<uint4*>(dst + r * ld + c * 8) = val;
  }
}

template <int D>
__global__ void __launch_bounds__(128) attn_prefill_kernel(AttnArgs a) {
  using C = Prefill<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem + C::kQ);
  bf16* Ks = reinterpret_cast<bf16*>(smem + C::kK);
  bf16* Vs = reinterpret_cast<bf16*>(smem + C::kV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* Sw = reinterpret_cast<float*>(smem + C::kS) + warp * 16 * C::LDS;
  bf16* Pw = reinterpret_cast<bf16*>(smem + C::kP) + warp * 16 * C::LDP;
  float* Ow = reinterpret_cast<float*>(smem + C::kO) + warp * 16 * C::LDO;
  select_sequence(a);

  const int64_t h = blockIdx.y, kvh = h / (a.H / a.Hkv);
  const int64_t q0 = int64_t{blockIdx.x} * C::BQ;
  const bf16* qb = a.q + q0 * a.qs0 + h * a.qs1;
  const bf16* kb = a.k + kvh * a.ks1;
  const bf16* vb = a.v + kvh * a.vs1;

  load_tile<D>(Qs, C::LDQ, qb, a.qs0, C::BQ, a.T - q0);
  for (int e = lane; e < 16 * D; e += 32) Ow[(e / D) * C::LDO + e % D] = 0.f;

  // Softmax ownership: lane pair (2r, 2r+1) owns row r of this warp's 16; each lane half the columns.
  const int r = lane >> 1, half = lane & 1;
  const int64_t qi = q0 + warp * 16 + r;  // absolute query row (may be >= T: computed, never written)
  float m_i = -INFINITY, l_i = 0.f;

  int64_t k_end = a.S;
  if (a.causal) k_end = std::min<int64_t>(a.S, a.q_offset + std::min<int64_t>(a.T, q0 + C::BQ));
  for (int64_t k0 = 0; k0 < k_end; k0 += C::BK) {
    __syncthreads();  // previous K/V tiles fully consumed (and, first time, Q/O initialised)
    load_tile<D>(Ks, C::LDK, kb + k0 * a.ks0, a.ks0, C::BK, a.S - k0);
    load_tile<D>(Vs, C::LDV, vb + k0 * a.vs0, a.vs0, C::BK, a.S - k0);
    __syncthreads();

    // S_w[16, BK] = Q_w[16, D] · K_tile[BK, D]ᵀ
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[C::BK / 16];
#pragma unroll
      for (int j = 0; j < C::BK / 16; ++j) wmma::fill_fragment(acc[j], 0.f);
#pragma unroll
      for (int d0 = 0; d0 < D; d0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa;
        wmma::load_matrix_sync(qa, Qs + warp * 16 * C::LDQ + d0, C::LDQ);
#pragma unroll
        for (int j = 0; j < C::BK / 16; ++j) {
          // Kᵀ as a col-major [D, BK] matrix is K row-major [BK, D]: element (d, j) at Ks[j*LDK + d].
          wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kbf;
          wmma::load_matrix_sync(kbf, Ks + j * 16 * C::LDK + d0, C::LDK);
          wmma::mma_sync(acc[j], qa, kbf, acc[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < C::BK / 16; ++j) wmma::store_matrix_sync(Sw + j * 16, acc[j], C::LDS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax on row r, columns [half*32, half*32 + 32).
    {
      float s[32];
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        const int64_t kj = k0 + col;
        const bool ok = kj < a.S && (!a.causal || kj <= a.q_offset + qi);
        s[c] = ok ? Sw[r * C::LDS + col] * a.scale : -INFINITY;
        mx = fmaxf(mx, s[c]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_new = fmaxf(m_i, mx);
      float alpha = 1.f, sum = 0.f;
      if (m_new == -INFINITY) {
#pragma unroll
        for (int c = 0; c < 32; ++c) Pw[r * C::LDP + half * 32 + c] = __float2bfloat16_rn(0.f);
      } else {
        alpha = expf(m_i - m_new);  // m_i = -inf -> 0 (O and l are still zero)
#pragma unroll
        for (int c = 0; c < 32; ++c) {
          const bf16 p = __float2bfloat16_rn(expf(s[c] - m_new));
          Pw[r * C::LDP + half * 32 + c] = p;
          sum += __bfloat162float(p);
        }
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      l_i = l_i * alpha + sum;
      m_i = m_new;
      if (alpha != 1.f)
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) Ow[r * C::LDO + d] *= alpha;
    }
    __syncwarp();

    // O_w[16, D] += P_w[16, BK] · V_tile[BK, D]
#pragma unroll
    for (int d0 = 0; d0 < D; d0 += 16) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::load_matrix_sync(o, Ow + d0, C::LDO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < C::BK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vb16;
        wmma::load_matrix_sync(pa, Pw + kk, C::LDP);
        wmma::load_matrix_sync(vb16, Vs + kk * C::LDV + d0, C::LDV);
        wmma::mma_sync(o, pa, vb16, o);
      }
      wmma::store_matrix_sync(Ow + d0, o, C::LDO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  __syncwarp();
  if (qi < a.T) {
    const float inv = l_i > 0.f ? 1.f / l_i : 0.f;
    bf16* dst = a.out + qi * a.os0 + h * a.os1;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); ++d) dst[d] = __float2bfloat16_rn(Ow[r * C::LDO + d] * inv);
  }
}

void launch_wmma(const AttnArgs& a, int64_t D, int64_t batch, Context& ctx) {
  if (D == 64)
    launch_prefill<Prefill<64>>(attn_prefill_kernel<64>, a, batch, ctx);
  else
    launch_prefill<Prefill<128>>(attn_prefill_kernel<128>, a, batch, ctx);
}

}  // namespace

void use_wmma_prefill(bool on) { set_prefill_override(on ? launch_wmma : nullptr); }
bool wmma_prefill_in_use() { return prefill_override() == launch_wmma; }

}  // namespace sailvl::ops::cuda::dev
