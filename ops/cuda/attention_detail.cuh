// Internal to the CUDA attention kernels (ops/cuda/attention.cu and the development kernels under
// ops/cuda/dev/): the launch arguments, the per-sequence offset of a batch, the prefill launch, and
// the hook through which a test or benchmark swaps in another prefill kernel. Model code never
// includes this; it calls ops::attention.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/cuda/common.cuh"
#include "ops/cuda/context.h"

namespace sailvl::ops::cuda::attention_detail {

struct AttnArgs {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* out;
  int64_t qs0, qs1, ks0, ks1, vs0, vs1, os0, os1;  // token and head strides (elements)
  int64_t T, S, H, Hkv;                            // per sequence; blockIdx.z picks the sequence of a batch
  int64_t q_offset;
  int causal;
  float scale;
};

// Points a at sequence blockIdx.z of a batch (AttentionParams::batch): T query rows and S key rows
// each, stacked on dim 0.
__device__ __forceinline__ void select_sequence(AttnArgs& a) {
  const int64_t b = blockIdx.z;
  a.q += b * a.T * a.qs0;
  a.out += b * a.T * a.os0;
  a.k += b * a.S * a.ks0;
  a.v += b * a.S * a.vs0;
}

// One prefill launch of a tiled kernel: grid (query blocks, heads, sequences), 128 threads, C::kBytes
// of dynamic shared memory (above 48 KB, so opted in; the attribute is set on every launch, which
// costs ~1 µs on the host and holds for whichever device is current).
template <typename C>
inline void launch_prefill(void (*kernel)(AttnArgs), const AttnArgs& a, int64_t batch, Context& ctx) {
  SAILVL_CHECK(C::kBytes <= ctx.smem_optin(), Internal, "attention: prefill tile needs ", C::kBytes,
               " bytes of shared memory, device allows ", ctx.smem_optin());
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(C::kBytes)));
  const int64_t qblocks = (a.T + C::BQ - 1) / C::BQ;
  SAILVL_CHECK(qblocks <= 0x7fffffff && a.H <= 65535 && batch <= 65535, Internal, "attention: grid too large (T=", a.T,
               ", H=", a.H, ", batch=", batch, ")");
  const dim3 grid(static_cast<unsigned>(qblocks), static_cast<unsigned>(a.H), static_cast<unsigned>(batch));
  kernel<<<grid, 128, C::kBytes, ctx.stream()>>>(a);
  CUDA_CHECK_LAUNCH();
}

// Prefill override (T > 1): when set, ops::attention calls it instead of the mma.sync kernel, with
// the head dim D (64 or 128) and the batch. nullptr (the default) = the production kernel. Not for
// production use: ops/cuda/dev/attention_wmma.h sets it for the cross-checks.
using PrefillOverride = void (*)(const AttnArgs& a, int64_t D, int64_t batch, Context& ctx);
PrefillOverride prefill_override();
void set_prefill_override(PrefillOverride f);

}  // namespace sailvl::ops::cuda::attention_detail
