// Host limit probes: see probes.h.
#include "ops/probes.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SAILVL_PROBE_AVX2 1
#endif

namespace sailvl::ops {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A store the optimiser cannot drop.
volatile float g_sink = 0;

// Rows of kReadRow floats; each thread sums groups of 8 consecutive rows as 8 sequential streams.
// (One stream per core reaches ~25% less; 8 streams a power of two apart collide in DRAM banks.)
constexpr int64_t kReadRow = 4104;  // 16 KiB + 32 B

double read_bw_once(const float* p, int64_t n) {
  const auto t0 = Clock::now();
  const int64_t groups = n / (8 * kReadRow);
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
#ifdef SAILVL_PROBE_AVX2
    __m256 a[8];
    for (auto& v : a) v = _mm256_setzero_ps();
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const float* s = p + g * 8 * kReadRow;
      for (int64_t i = 0; i < kReadRow; i += 8)
        for (int j = 0; j < 8; ++j) a[j] = _mm256_add_ps(a[j], _mm256_loadu_ps(s + j * kReadRow + i));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                                          _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7]))));
    for (float l : lanes) total += l;
#else
    float acc[8] = {};
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const float* s = p + g * 8 * kReadRow;
      for (int64_t i = 0; i < kReadRow; ++i)
        for (int j = 0; j < 8; ++j) acc[j] += s[j * kReadRow + i];
    }
    for (float l : acc) total += l;
#endif
  }
  g_sink = total;
  return static_cast<double>(groups * 8 * kReadRow) * 4 / seconds_since(t0) / 1e9;
}

double copy_bw_once(float* dst, const float* src, int64_t n) {
  const auto t0 = Clock::now();
#pragma omp parallel
  {
    const int T = omp_get_num_threads();
    const int64_t per = (n + T - 1) / T, lo = std::min(n, per * omp_get_thread_num()), hi = std::min(n, lo + per);
    if (hi > lo) std::memcpy(dst + lo, src + lo, static_cast<size_t>(hi - lo) * 4);
  }
  g_sink = dst[n / 2];
  return static_cast<double>(n) * 8 / seconds_since(t0) / 1e9;  // read + written
}

// 12 independent FMA chains per thread, all in registers: acc = acc·m + c converges to c / (1 - m)
// (finite, never denormal), and strict FP semantics keep the compiler from shortening the chains.
constexpr int kFmaChains = 12;

double fma_peak_once(int64_t iters) {
  const auto t0 = Clock::now();
  int threads = 1;
  float sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
#pragma omp single
    threads = omp_get_num_threads();
#ifdef SAILVL_PROBE_AVX2
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    __m256 a[kFmaChains];
    for (int j = 0; j < kFmaChains; ++j) a[j] = _mm256_set1_ps(static_cast<float>(j + omp_get_thread_num()));
    for (int64_t i = 0; i < iters; ++i) {
      a[0] = _mm256_fmadd_ps(a[0], m, c);
      a[1] = _mm256_fmadd_ps(a[1], m, c);
      a[2] = _mm256_fmadd_ps(a[2], m, c);
      a[3] = _mm256_fmadd_ps(a[3], m, c);
      a[4] = _mm256_fmadd_ps(a[4], m, c);
      a[5] = _mm256_fmadd_ps(a[5], m, c);
      a[6] = _mm256_fmadd_ps(a[6], m, c);
      a[7] = _mm256_fmadd_ps(a[7], m, c);
      a[8] = _mm256_fmadd_ps(a[8], m, c);
      a[9] = _mm256_fmadd_ps(a[9], m, c);
      a[10] = _mm256_fmadd_ps(a[10], m, c);
      a[11] = _mm256_fmadd_ps(a[11], m, c);
    }
    __m256 s = a[0];
    for (int j = 1; j < kFmaChains; ++j) s = _mm256_add_ps(s, a[j]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    for (float l : lanes) sink += l;
#else
    float a[kFmaChains * 8];
    for (int j = 0; j < kFmaChains * 8; ++j) a[j] = static_cast<float>(j + omp_get_thread_num());
    for (int64_t i = 0; i < iters; ++i)
      for (int j = 0; j < kFmaChains * 8; ++j) a[j] = std::fma(a[j], 0.999f, 1e-3f);
    for (float l : a) sink += l;
#endif
  }
  g_sink = sink;
  return static_cast<double>(threads) * static_cast<double>(iters) * kFmaChains * 16 / seconds_since(t0) / 1e9;
}

}  // namespace

HostLimits measure_host_limits(int64_t buffer_mib) {
  HostLimits r;
  constexpr int64_t kFmaIters = int64_t{8} << 20;  // ~20 ms per run at ~3 GHz
  fma_peak_once(kFmaIters / 4);                    // clocks up, threads spawned
  for (int i = 0; i < 3; ++i) r.fma_gflops = std::max(r.fma_gflops, fma_peak_once(kFmaIters));
  const int64_t floats = std::max<int64_t>(buffer_mib, 1) << 18;  // MiB -> floats
  {
    std::vector<float> buf(static_cast<size_t>(2 * floats), 1.0f);
    for (int i = 0; i < 3; ++i) r.read_gbs = std::max(r.read_gbs, read_bw_once(buf.data(), 2 * floats));
  }
  std::vector<float> a(static_cast<size_t>(floats), 1.0f), b(static_cast<size_t>(floats), 0.0f);
  for (int i = 0; i < 3; ++i) r.copy_gbs = std::max(r.copy_gbs, copy_bw_once(b.data(), a.data(), floats));
  return r;
}

#ifndef SAILVL_HAS_CUDA
DeviceLimits measure_device_limits(const Device& device) {
  fail(ErrorKind::Cuda, "cannot measure ", device.str(), ": sailvl was built without CUDA");
}
#endif  // with CUDA: ops/cuda/probes.cpp

}  // namespace sailvl::ops
