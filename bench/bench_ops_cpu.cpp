// CPU op microbenchmarks, reported against probes measured on the same machine in the same run:
//   ReadBandwidth  — a multi-threaded AVX2 sum over 512 MiB (what a GEMV can hope to stream),
//   CopyBandwidth  — a multi-threaded memcpy of 256 MiB (bytes read + written),
//   EigenSgemm     — Eigen's own multi-threaded F32 GEMM at 1792×1536×1536 (what the GEMM path
//                    can hope to reach; our linear() wraps the same kernel with BF16 panels).
// Then linear() at the Qwen2.5-1.5B decode / prefill and InternViT-300M shapes, attention, norms.
// Counters: GB/s (weight bytes for linear decode), GFLOP/s, and pct_probe (% of the probe).
//
//   build-ops/bench_ops_cpu                                 full run (minutes)
//   build-ops/bench_ops_cpu --benchmark_min_time=0.01       CI smoke run (this Google Benchmark
//                                                           takes a plain number, not "0.01s")
// Threads: OMP_NUM_THREADS (default: all cores). Run nothing else meanwhile; on a shared machine
// compare ratios (pct_probe) rather than absolute numbers.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Core>
#include <chrono>
#include <cstring>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "ops/ops.h"

using namespace sailvl;

namespace {

// Cheap deterministic fill (setup must stay fast for the CI mode).
void fill(const Tensor& t, uint64_t seed, float scale = 1.0f) {
  const int64_t n = t.numel();
  auto next = [](uint64_t& s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  if (t.dtype() == DType::F32) {
    float* p = t.data<float>();
#pragma omp parallel
    {
      uint64_t s = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(omp_get_thread_num()) + 1;
#pragma omp for
      for (int64_t i = 0; i < n; ++i) p[i] = scale * (static_cast<float>(next(s) >> 40) * 0x1p-23f - 1.0f);
    }
  } else {
    uint16_t* p = t.data<uint16_t>();
#pragma omp parallel
    {
      uint64_t s = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(omp_get_thread_num()) + 1;
#pragma omp for
      for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(scale * (static_cast<float>(next(s) >> 40) * 0x1p-23f - 1.0f));
    }
  }
}

// ---- probes ----

double read_bw_once(const float* p, int64_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
#ifdef __AVX2__
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; i += 32) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (float l : lanes) total += l;
#else
    float acc[8] = {};
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
    for (float l : acc) total += l;
#endif
  }
  benchmark::DoNotOptimize(total);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(n) * 4 / s / 1e9;
}

constexpr int64_t kProbeFloats = int64_t{128} << 20;  // 512 MiB

// Read bandwidth in GB/s, measured once (best of 3) and reused by the pct_probe counters.
double probe_read_gbs() {
  static const double gbs = [] {
    std::vector<float> buf(static_cast<size_t>(kProbeFloats), 1.0f);
    double best = 0;
    for (int r = 0; r < 3; ++r) best = std::max(best, read_bw_once(buf.data(), kProbeFloats));
    return best;
  }();
  return gbs;
}

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double probe_gemm_gflops() {
  static const double gf = [] {
    const int64_t M = 1792, N = 1536, K = 1536;
    RowMajor x = RowMajor::Random(M, K), w = RowMajor::Random(N, K), o(M, N);
    Eigen::setNbThreads(omp_get_max_threads());
    double best = 0;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      o.noalias() = x * w.transpose();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 2.0 * M * N * K / s / 1e9);
    }
    benchmark::DoNotOptimize(o.data());
    return best;
  }();
  return gf;
}

void BM_ReadBandwidth(benchmark::State& st) {
  std::vector<float> buf(static_cast<size_t>(kProbeFloats), 1.0f);
  for (auto _ : st) benchmark::DoNotOptimize(read_bw_once(buf.data(), kProbeFloats));
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(kProbeFloats) * 4 / 1e9,
                                           benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CopyBandwidth(benchmark::State& st) {
  const int64_t n = kProbeFloats / 2;
  std::vector<float> a(static_cast<size_t>(n), 1.0f), b(static_cast<size_t>(n), 0.0f);
  const int T = omp_get_max_threads();
  for (auto _ : st) {
#pragma omp parallel num_threads(T)
    {
      const int64_t per = (n + T - 1) / T, lo = per * omp_get_thread_num(), hi = std::min(n, lo + per);
      if (hi > lo) std::memcpy(b.data() + lo, a.data() + lo, static_cast<size_t>(hi - lo) * 4);
    }
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(n) * 8 / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EigenSgemm(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  RowMajor x = RowMajor::Random(M, K), w = RowMajor::Random(N, K), o(M, N);
  Eigen::setNbThreads(omp_get_max_threads());
  for (auto _ : st) {
    o.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(o.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_EigenSgemm)->Args({1792, 1536, 1536})->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- linear ----

// Args: M, N, K, weight dtype (0 = BF16, 1 = F32).
void BM_Linear(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  const DType wt = st.range(3) ? DType::F32 : DType::BF16;
  Tensor x = Tensor::empty({M, K}, DType::F32), w = Tensor::empty({N, K}, wt), out = Tensor::empty({M, N}, DType::F32);
  fill(x, 1);
  fill(w, 2, 0.05f);
  ops::linear(out, x, w);  // warm-up (first touch, per-thread scratch)
  for (auto _ : st) {
    ops::linear(out, x, w);
    benchmark::DoNotOptimize(out.raw_data());
  }
  // Rate counters are divided by the time per iteration when reported; scaling the per-iteration
  // amount by 100 / probe turns the rate into "% of the probe".
  const double gflop = 2.0 * M * N * K / 1e9, wgb = static_cast<double>(w.nbytes()) / 1e9;
  constexpr auto kRate = benchmark::Counter::kIsIterationInvariantRate;
  st.counters["GFLOP/s"] = benchmark::Counter(gflop, kRate, benchmark::Counter::OneK::kIs1000);
  if (M <= 4) {
    st.counters["wGB/s"] = benchmark::Counter(wgb, kRate, benchmark::Counter::OneK::kIs1000);
    st.counters["pct_probe"] = benchmark::Counter(wgb * 100 / probe_read_gbs(), kRate, benchmark::Counter::OneK::kIs1000);
  } else {
    st.counters["pct_probe"] = benchmark::Counter(gflop * 100 / probe_gemm_gflops(), kRate, benchmark::Counter::OneK::kIs1000);
  }
  st.SetLabel(M <= 4 ? "gemv: pct of read probe" : "gemm: pct of Eigen sgemm probe");
}

BENCHMARK(BM_Linear)
    ->ArgNames({"M", "N", "K", "f32w"})
    ->Args({1, 8960, 1536, 0})      // decode: gate/up proj
    ->Args({1, 1536, 8960, 0})      // decode: down proj
    ->Args({1, 151936, 1536, 0})    // decode: LM head (467 MB of BF16)
    ->Args({1, 8960, 1536, 1})      // decode, F32 weight (twice the bytes)
    ->Args({4, 8960, 1536, 0})      // 4-row GEMV
    ->Args({1792, 1536, 1536, 0})   // prefill: q/o proj
    ->Args({1792, 8960, 1536, 0})   // prefill: gate/up proj
    ->Args({1792, 1536, 1536, 1})   // prefill, F32 weight (no conversion)
    ->Args({7175, 4096, 1024, 0})   // InternViT-300M fc1, 7 tiles × 1025 tokens
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- attention ----

// Args: T, S, H, Hkv, Dh, causal.
void BM_Attention(benchmark::State& st) {
  const int64_t T = st.range(0), S = st.range(1), H = st.range(2), Hkv = st.range(3), Dh = st.range(4);
  Tensor q = Tensor::empty({T, H, Dh}, DType::F32), out = Tensor::empty({T, H, Dh}, DType::F32);
  Tensor k = Tensor::empty({S, Hkv, Dh}, DType::F32), v = Tensor::empty({S, Hkv, Dh}, DType::F32);
  fill(q, 3);
  fill(k, 4);
  fill(v, 5);
  ops::AttentionParams p;
  p.causal = st.range(5) != 0;
  p.q_offset = p.causal ? S - T : 0;
  for (auto _ : st) {
    ops::attention(out, q, k, v, p);
    benchmark::DoNotOptimize(out.raw_data());
  }
  // Useful FLOPs: 2 GEMMs of 2·Dh per (query, visible key, head).
  double pairs = 0;
  for (int64_t t = 0; t < T; ++t) pairs += p.causal ? static_cast<double>(std::min(S, p.q_offset + t + 1)) : S;
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * Dh * H * pairs / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
  st.counters["kvGB/s"] = benchmark::Counter(2.0 * S * Hkv * Dh * 4 / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_Attention)
    ->ArgNames({"T", "S", "H", "Hkv", "Dh", "causal"})
    ->Args({1792, 1792, 12, 2, 128, 1})  // Qwen2.5-1.5B prefill
    ->Args({1, 2048, 12, 2, 128, 1})     // Qwen2.5-1.5B decode at context 2048
    ->Args({1025, 1025, 16, 16, 64, 0})  // InternViT-300M, one tile
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- norms and elementwise ----

void BM_RmsNorm(benchmark::State& st) {
  const int64_t T = st.range(0), D = st.range(1);
  Tensor x = Tensor::empty({T, D}, DType::F32), w = Tensor::empty({D}, DType::BF16), out = Tensor::empty({T, D}, DType::F32);
  fill(x, 6);
  fill(w, 7);
  for (auto _ : st) {
    ops::rms_norm(out, x, w, 1e-6f);
    benchmark::DoNotOptimize(out.raw_data());
  }
  st.counters["GB/s"] = benchmark::Counter(2.0 * T * D * 4 / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_RmsNorm)->ArgNames({"T", "D"})->Args({1, 1536})->Args({1792, 1536})->UseRealTime();

void BM_LayerNorm(benchmark::State& st) {
  const int64_t T = st.range(0), D = st.range(1);
  Tensor x = Tensor::empty({T, D}, DType::F32), out = Tensor::empty({T, D}, DType::F32);
  Tensor w = Tensor::empty({D}, DType::BF16), b = Tensor::empty({D}, DType::BF16);
  fill(x, 8);
  fill(w, 9);
  fill(b, 10);
  for (auto _ : st) {
    ops::layer_norm(out, x, w, b, 1e-6f);
    benchmark::DoNotOptimize(out.raw_data());
  }
  st.counters["GB/s"] = benchmark::Counter(2.0 * T * D * 4 / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_LayerNorm)->ArgNames({"T", "D"})->Args({7175, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_GeluErf(benchmark::State& st) {
  const int64_t n = st.range(0);
  Tensor x = Tensor::empty({n}, DType::F32), out = Tensor::empty({n}, DType::F32);
  fill(x, 11, 3.0f);
  for (auto _ : st) {
    ops::gelu_erf(out, x);
    benchmark::DoNotOptimize(out.raw_data());
  }
  st.counters["Gelem/s"] = benchmark::Counter(static_cast<double>(n) / 1e9, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::OneK::kIs1000);
}
BENCHMARK(BM_GeluErf)->Arg(1025 * 4096)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Sample(benchmark::State& st) {
  Tensor logits = Tensor::empty({151936}, DType::F32);
  fill(logits, 12, 5.0f);
  ops::SamplingParams p;
  p.temperature = st.range(0) ? 1.0f : 0.0f;
  p.top_k = st.range(1);
  p.allowed_vocab = 151674;
  uint64_t step = 0;
  for (auto _ : st) benchmark::DoNotOptimize(ops::sample(logits, p, step++));
}
BENCHMARK(BM_Sample)->ArgNames({"sampling", "top_k"})->Args({0, 0})->Args({1, 50})->Args({1, 0})->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("threads=%d  probe: read %.1f GB/s, Eigen sgemm 1792x1536x1536 %.1f GFLOP/s\n", omp_get_max_threads(),
              probe_read_gbs(), probe_gemm_gflops());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
