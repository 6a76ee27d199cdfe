// The two sequential pieces of sampling that the CPU sampler (ops/cpu/sample.cpp) and the CUDA
// sampler (ops/cuda/sample.cu, in its one-thread draw kernel) must compute identically: the seeded
// uniform draw, the top-p cut and the pick. One definition, compiled for host and device, so the
// two backends cannot drift apart. The recipe and its reasons: the header of ops/cpu/sample.cpp.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SAILVL_HD __host__ __device__ inline
#else
#define SAILVL_HD inline
#endif

namespace sailvl::ops::sampling {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finalizer.
SAILVL_HD uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// u in [0, 1) with 24 random bits (exact in F32): depends only on (seed, step).
SAILVL_HD double uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(mix(seed ^ mix((step + 1) * kGolden)) >> 40) * (1.0 / 16777216.0);
}

// w[0..count): unnormalised probabilities in descending order. Top-p keeps a prefix: walking
// ascending from the end, drop while the cumulative probability stays <= 1 - top_p; the largest
// always stays. Returns the number kept.
SAILVL_HD int64_t top_p_keep(const double* w, int64_t count, float top_p) {
  int64_t keep = count;
  if (top_p < 1.0f) {
    double z = 0;
    for (int64_t i = 0; i < count; ++i) z += w[i];
    const double thr = 1.0 - static_cast<double>(top_p);
    double cum = 0;
    while (keep > 1) {
      cum += w[keep - 1] / z;
      if (cum <= thr)
        --keep;
      else
        break;
    }
  }
  return keep;
}

// The index in [0, keep) of the first w whose running sum (in order) exceeds u · Σw; the last one
// if rounding leaves none.
SAILVL_HD int64_t pick(const double* w, int64_t keep, double u) {
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += w[i];
  const double target = u * total;
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += w[i];
    if (cum > target) return i;
  }
  return keep - 1;
}

}  // namespace sailvl::ops::sampling

#undef SAILVL_HD
