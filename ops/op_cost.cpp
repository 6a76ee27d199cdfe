// Op costs from shapes: see op_cost.h.
#include "ops/op_cost.h"

#include <algorithm>

namespace sailvl::ops {

namespace {

double bytes_of(const Tensor& t) { return t.defined() ? static_cast<double>(t.nbytes()) : 0.0; }

}  // namespace

OpCost linear_cost(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias) {
  const double N = static_cast<double>(w.rows()), K = static_cast<double>(w.cols());
  const double M = static_cast<double>(out.numel()) / std::max(N, 1.0);  // rows of x (leading dims flattened)
  OpCost c;
  c.flops = 2 * M * N * K;
  c.bytes = bytes_of(x) + static_cast<double>(w.nbytes()) + (bias ? bytes_of(*bias) : 0.0) + bytes_of(out);
  return c;
}

int64_t attention_pairs(int64_t T, int64_t S, const AttentionParams& p) {
  const int64_t B = std::max<int64_t>(p.batch, 1), Tq = T / B, Sk = S / B;
  if (!p.causal) return B * Tq * Sk;
  // Query i sees min(Sk, q_offset + i + 1) keys: a ramp up to Sk, then Sk for the rest.
  int64_t pairs = 0;
  for (int64_t i = 0; i < Tq; ++i) pairs += std::min(Sk, p.q_offset + i + 1);
  return B * pairs;
}

OpCost attention_cost(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  const int64_t T = q.size(0), S = k.size(0), H = q.size(1), Dh = q.size(2);
  OpCost c;
  c.flops = 4.0 * static_cast<double>(H * Dh) * static_cast<double>(attention_pairs(T, S, p));
  c.bytes = bytes_of(q) + bytes_of(k) + bytes_of(v) + bytes_of(out);
  return c;
}

OpCost patch_embed_cost(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b) {
  // out [T, G², C]: one GEMM of T·G² rows, C columns and 3·P·P inputs (w [C, 3, P, P]).
  const double rows = static_cast<double>(out.numel()) / static_cast<double>(std::max<int64_t>(w.size(0), 1));
  const double in = static_cast<double>(w.numel()) / static_cast<double>(std::max<int64_t>(w.size(0), 1));
  OpCost c;
  c.flops = 2 * rows * in * static_cast<double>(w.size(0));
  c.bytes = bytes_of(pixels) + bytes_of(w) + bytes_of(b) + bytes_of(out);
  return c;
}

OpCost memory_cost(std::initializer_list<const Tensor*> read, const Tensor* written) {
  OpCost c;
  for (const Tensor* t : read)
    if (t) c.bytes += bytes_of(*t);
  if (written) c.bytes += bytes_of(*written);
  return c;
}

}  // namespace sailvl::ops
