// What one op call costs, from its shapes alone: the FLOPs and bytes `--profile` reports per op
// (runtime/profile.h) and that ops/dispatch.cpp puts in each OpCall (tensor/observe.h) for an
// observer.
//
// The conventions are the cost model's (model/cost.h):
//   FLOPs  2 per multiply-add, counted for the matrix products only: linear (2·M·N·K), the patch
//          convolution as the GEMM it is, and attention's two products (4·Dh per head and visible
//          (query, key) pair). Norms, activations, RoPE and softmax count 0 (a few % of the total).
//   bytes  every operand read once and every output written once, in their stored dtypes: the
//          traffic of an ideal kernel, what a memory-bound op cannot go below. A linear reads its
//          weight as stored (Weight::nbytes(): BF16, or q8/q4 codes + scales).
#pragma once

#include <optional>

#include "ops/ops.h"

namespace sailvl::ops {

struct OpCost {
  double flops = 0;
  double bytes = 0;
};

OpCost linear_cost(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias);
// pairs = the visible (query, key) pairs: per sequence of Tq = T/B queries and Sk = S/B keys, Tq·Sk
// without a mask; with the causal mask query i sees min(Sk, q_offset + i + 1) keys.
OpCost attention_cost(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p);
int64_t attention_pairs(int64_t T, int64_t S, const AttentionParams& p);
// pixels [T, 3, S, S], w [C, 3, P, P]: 2 · T·(S/P)² · 3P² · C.
OpCost patch_embed_cost(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b);
// An op with no counted FLOPs: the bytes of its inputs read and its output written.
OpCost memory_cost(std::initializer_list<const Tensor*> read, const Tensor* written);

}  // namespace sailvl::ops
