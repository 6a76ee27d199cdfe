// Workspace needs of each backend: see workspace.h.
#include "ops/workspace.h"

#include <algorithm>

#include "ops/cpu/limits.h"
#include "ops/cuda/limits.h"
#include "tensor/error.h"

namespace sailvl::ops {

namespace {

uint64_t u(int64_t v) { return static_cast<uint64_t>(std::max<int64_t>(v, 0)); }

// CPU: per thread the GEMM packing buffers and the score rows of one attention task (LLM or
// vision, whichever is larger), plus one pass's im2col columns (F32, allocated per call).
WorkspaceBytes cpu_bytes(const WorkspaceQuery& q) {
  const uint64_t panels = u(cpu::kGemmMC * cpu::kGemmKC + cpu::kGemmKC * cpu::kGemmNC) * 4;
  const uint64_t llm_scores = u(cpu::kAttnRowsCausal) * (u(q.llm_keys) + 2 * u(q.llm_head_dim)) * 4;
  const uint64_t vit_scores =
      q.vision_tokens > 0 ? u(cpu::kAttnRowsFull) * (u(q.vision_tokens) + 2 * u(q.vision_head_dim)) * 4 : 0;
  const uint64_t per_thread = panels + std::max(llm_scores, vit_scores);
  const uint64_t im2col = u(q.im2col_rows) * u(q.im2col_cols) * 4;
  const int64_t threads = std::max<int64_t>(q.threads, 1);
  return {u(threads) * per_thread + im2col,
          str_cat(threads, " threads x op scratch (GEMM panels, attention scores)", im2col ? " + im2col" : "")};
}

// CUDA: the cuBLASLt workspace and the op scratch slots, each at least kScratchMinBytes: decode
// attention partials, sampling, one pass's im2col columns (BF16).
WorkspaceBytes cuda_bytes(const WorkspaceQuery& q) {
  auto slot = [](uint64_t n) { return std::max<uint64_t>(n, cuda::kScratchMinBytes); };
  const uint64_t splits = (u(q.llm_keys) + u(cuda::kDecodeKeysPerSplit) - 1) / u(cuda::kDecodeKeysPerSplit);
  uint64_t total = cuda::kLtWorkspaceBytes;
  total += slot(splits * u(q.llm_heads) * (u(q.llm_head_dim) + 2) * 4);       // attention partials (F32)
  total += slot(cuda::kSampleBytesPerId * u(q.vocab) + (uint64_t{1} << 20));  // sampling
  const uint64_t im2col = u(q.im2col_rows) * u(q.im2col_cols) * 2;
  if (im2col) total += slot(im2col);
  return {total, str_cat("cuBLASLt ", cuda::kLtWorkspaceBytes >> 20, " MiB + op scratch (attention, sampling",
                         im2col ? ", im2col)" : ")")};
}

}  // namespace

WorkspaceBytes workspace_bytes(const Device& device, const WorkspaceQuery& q) {
  return device.is_cuda() ? cuda_bytes(q) : cpu_bytes(q);
}

}  // namespace sailvl::ops
