// Backend-internal: the cpu implementations of ops/ops.h, same signatures.
// CPU twins (ops/cpu/*.cpp): F32 activations, BF16/F16/F32 or q8/q4 weights (linear), OpenMP threads.
// Only ops/dispatch.cpp and tests call these directly; model code calls sailvl::ops::*.
#pragma once

#include "ops/ops.h"

namespace sailvl::ops::cpu {

void linear(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias);
void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps);
void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps);
void rope(const Tensor& x, const Tensor& positions, double theta);
void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p);
void gelu_erf(const Tensor& out, const Tensor& x);
void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up);
void add(const Tensor& out, const Tensor& a, const Tensor& b);
void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b);
void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b);
void pixel_shuffle_v2(const Tensor& out, const Tensor& in);
void embedding(const Tensor& out, const Tensor& ids, const Tensor& table);
void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src);
int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step);

}  // namespace sailvl::ops::cpu
