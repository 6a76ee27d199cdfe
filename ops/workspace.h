// What the ops keep besides the tensors they are given, per backend: per-thread scratch on the
// CPU (GEMM panels, attention scores, im2col), library workspaces and op scratch on CUDA. The
// memory plan (runtime/memory_plan.h) asks here, so its numbers follow the kernels' own constants
// (ops/cpu/limits.h, ops/cuda/limits.h) instead of copies of them.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/storage.h"

namespace sailvl::ops {

// The largest calls a workload makes.
struct WorkspaceQuery {
  int64_t threads = 1;    // CPU threads that keep their own scratch
  int64_t llm_keys = 0;   // longest causal attention key range (KV rows)
  int64_t llm_heads = 0;  // query heads of the LLM
  int64_t llm_head_dim = 0;
  int64_t vision_tokens = 0;  // bidirectional attention keys of one tile (0: no images)
  int64_t vision_head_dim = 0;
  int64_t im2col_rows = 0;  // patch embedding of one pass: rows (tiles × patches) ...
  int64_t im2col_cols = 0;  // ... × 3·P² columns
  int64_t vocab = 0;        // logits the sampler sorts
};

struct WorkspaceBytes {
  uint64_t bytes = 0;
  std::string detail;  // what it is made of, for the plan's breakdown
};

WorkspaceBytes workspace_bytes(const Device& device, const WorkspaceQuery& q);

}  // namespace sailvl::ops
