// Next-token choice from logits [V] (F32): greedy argmax or seeded sampling in Hugging Face's order.
//
// Candidates: ids in [0, allowed_vocab) that are not in `banned` (padding rows of the embedding
// and tokens such as <IMG_CONTEXT> are never chosen).
//
// 1. Repetition penalty (HF RepetitionPenaltyLogitsProcessor), for each distinct id in `history`:
//      l = l < 0 ? l · r : l / r              (F32; applied in greedy mode too, as HF does)
// 2. Greedy (temperature == 0): the largest l; ties go to the lowest id. Done.
// 3. Temperature (HF TemperatureLogitsWarper): l = l / temperature   (F32 division)
// 4. Top-k (HF TopKLogitsWarper), k = min(top_k, #candidates): drop every l < (k-th largest l);
//    ties with the k-th value are kept, so more than k ids may survive.
// 5. Top-p (HF TopPLogitsWarper), if top_p < 1: order the survivors ascending, take the cumulative
//    softmax, drop those whose cumulative probability is <= 1 - top_p, always keep the largest.
// 6. Softmax over the survivors and one draw:
//      GOLDEN = 0x9E3779B97F4A7C15, mix = the splitmix64 finalizer of docs/CHECKPOINTS.md
//      u      = (mix(seed ^ mix((step + 1) · GOLDEN)) >> 40) · 2^-24      in [0, 1), exact in F32
//      order the survivors by probability descending (equal logits: lower id first), with
//      w_i = exp(l_i - max l) in float64 and W = Σ w_i, and return the first id whose running sum
//      (float64, in that order) exceeds u · W (the last survivor if rounding leaves none).
//    The draw depends only on (seed, step) — counter-based, no hidden state — so a CUDA sampler
//    following the same recipe picks the same token from the same logits, and a run is reproducible.
//
// Numerics: steps 1, 3 are F32 as in torch; the softmax of step 5 and 6 is evaluated in float64
// (torch uses F32; the two can disagree only when a cumulative probability lies within ~1e-7 of
// 1 - top_p). The top-p threshold is 1 - double(top_p), top_p being the F32 value given.
// Ordering ties (equal logits) are broken by id, lower first in descending order, which fixes the
// order that torch.sort leaves unspecified.
// Cost: O(V) for the filter, plus O(n log n) sorting of the survivors (n = k when top-k is on;
// the whole vocabulary otherwise).
// Errors: NaN or +Inf among the candidates (or no finite candidate) -> ErrorKind::NonFinite;
// bad parameters or every id banned -> ErrorKind::Internal.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"
#include "ops/sample_math.h"

namespace sailvl::ops::cpu {

namespace {

struct Cand {
  float l;
  int64_t id;
};
// Descending by logit, ties: lower id first.
inline bool before(const Cand& a, const Cand& b) { return a.l > b.l || (a.l == b.l && a.id < b.id); }

}  // namespace

int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step) {
  constexpr const char* op = "sample";
  check_dtype(logits, DType::F32, op, "logits");
  SAILVL_OP_CHECK(logits.device().is_cpu() && logits.dim() == 1 && logits.size(0) > 0 &&
                      (logits.size(0) == 1 || logits.stride(0) == 1),
                  op, "logits must be a contiguous CPU [V], got ", logits.describe());
  const int64_t V = logits.size(0);
  const int64_t n = p.allowed_vocab < 0 ? V : p.allowed_vocab;
  SAILVL_OP_CHECK(n > 0 && n <= V, op, "allowed_vocab ", p.allowed_vocab, " outside (0, ", V, "]");
  SAILVL_OP_CHECK(p.temperature >= 0 && std::isfinite(p.temperature), op, "bad temperature ", p.temperature);
  SAILVL_OP_CHECK(p.top_k >= 0, op, "negative top_k ", p.top_k);
  SAILVL_OP_CHECK(p.top_p >= 0 && p.top_p <= 1, op, "top_p ", p.top_p, " outside [0, 1]");
  SAILVL_OP_CHECK(p.repetition_penalty > 0 && std::isfinite(p.repetition_penalty), op, "bad repetition_penalty ",
                  p.repetition_penalty);

  // Working copy of the allowed logits; banned ids are flagged.
  static thread_local std::vector<float> l;
  static thread_local std::vector<uint8_t> banned;
  l.assign(logits.data<float>(), logits.data<float>() + n);
  banned.assign(static_cast<size_t>(n), 0);
  for (int64_t id : p.banned) {
    SAILVL_OP_CHECK(id >= 0, op, "negative banned id ", id);
    if (id < n) banned[id] = 1;
  }

  // 1. Repetition penalty, once per distinct id.
  if (p.repetition_penalty != 1.0f && !p.history.empty()) {
    std::vector<int64_t> seen(p.history.begin(), p.history.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    const float r = p.repetition_penalty;
    for (int64_t id : seen) {
      SAILVL_OP_CHECK(id >= 0 && id < V, op, "history id ", id, " outside [0, ", V, ")");
      if (id < n) l[id] = l[id] < 0 ? l[id] * r : l[id] / r;
    }
  }

  // 2. Greedy.
  if (p.temperature == 0) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (banned[i]) continue;
      SAILVL_CHECK(!std::isnan(l[i]), NonFinite, "logit of token ", i, " is NaN");
      if (best < 0 || l[i] > l[best]) best = i;
    }
    SAILVL_OP_CHECK(best >= 0, op, "every candidate id is banned");
    return best;
  }

  // 3. Temperature; gather candidates.
  std::vector<Cand> c;
  c.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (banned[i]) continue;
    const float v = l[i] / p.temperature;
    SAILVL_CHECK(!std::isnan(v) && v != INFINITY, NonFinite, "logit of token ", i, " is ", l[i]);
    c.push_back({v, i});
  }
  SAILVL_OP_CHECK(!c.empty(), op, "every candidate id is banned");

  // 4. Top-k: keep l >= the k-th largest value.
  if (p.top_k > 0 && p.top_k < static_cast<int64_t>(c.size())) {
    std::nth_element(c.begin(), c.begin() + (p.top_k - 1), c.end(), before);
    const float kth = c[p.top_k - 1].l;
    c.erase(std::remove_if(c.begin(), c.end(), [kth](const Cand& x) { return x.l < kth; }), c.end());
  }
  std::sort(c.begin(), c.end(), before);
  const double lmax = c.front().l;
  SAILVL_CHECK(std::isfinite(lmax), NonFinite, "no finite logit among the candidates");

  // Unnormalised probabilities, float64.
  std::vector<double> w(c.size());
  for (size_t i = 0; i < c.size(); ++i) w[i] = std::exp(static_cast<double>(c[i].l) - lmax);

  // 5. Top-p and 6. the draw (ops/sample_math.h, shared with the CUDA sampler).
  const int64_t keep = sampling::top_p_keep(w.data(), static_cast<int64_t>(w.size()), p.top_p);
  return c[static_cast<size_t>(sampling::pick(w.data(), keep, sampling::uniform(p.seed, step)))].id;
}

}  // namespace sailvl::ops::cpu
