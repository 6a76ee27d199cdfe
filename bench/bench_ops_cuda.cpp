// CUDA kernel microbenchmarks, reported against the hardware limits measured first:
//   probe/copy       device-to-device copy bandwidth (bytes read + written) -> the GB/s ceiling
//   probe/gemm8192   cuBLASLt BF16 8192³ -> the TFLOP/s ceiling
//   gemv/*           linear at M = 1, Qwen2.5-1.5B decode shapes: GB/s and % of the copy probe
//   gemm/*           linear at prefill / vision shapes: TFLOP/s and % of the GEMM probe
//   attn/*           prefill (T = S = 1792, causal GQA; ViT 1025 bidirectional) and decode (S = 2048)
//   norm/*           rms_norm at decode and prefill sizes: GB/s
// Timing: CUDA events around each iteration on the ops' stream, after warm-up; weights rotate
// over enough copies to exceed L2 (so every GEMV reads DRAM). Counters: GBps, TFLOPs, pct_peak.
// Built in every configuration where benchmarks are on; without the CUDA backend (or a device)
// it prints why and runs nothing.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "tensor/cuda_runtime.h"

#ifdef SAILVL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/linear_detail.h"
#include "tensor/tensor.h"

using namespace sailvl;
namespace gpu = sailvl::ops::cuda;

namespace {




gpu::Context& ctx() { return gpu::Context::get(0); }

// Device tensor of small random-ish BF16 values (never zeros: see METHOD.md).
Tensor filled(const Shape& shape, DType t = DType::BF16, float scale = 0.05f) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v(static_cast<size_t>(std::min<int64_t>(n, 1 << 20)));
  uint64_t z = 0x9E3779B97F4A7C15ull;
  for (float& x : v) {
    z = z * 6364136223846793005ull + 1442695040888963407ull;
    x = scale * (static_cast<float>(z >> 40) / 16777216.0f * 2.f - 1.f);
  }
  Tensor host = Tensor::empty(shape, DType::F32);
  float* p = host.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = v[static_cast<size_t>(i) % v.size()];
  return host.to(t).to(Device::cuda());
}

// Times fn() with events on the ops stream; sets the iteration time manually.
template <typename F>
void timed(benchmark::State& st, F&& fn) {
  cudaStream_t s = ctx().stream();
  for (int i = 0; i < 3; ++i) fn();  // warm-up (plans, module load)
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (auto _ : st) {
    cudaEventRecord(a, s);
    fn();
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    st.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

bool need_gpu(benchmark::State& st) {
  if (cuda::available()) return true;
  st.SkipWithError(("no GPU: " + cuda::status().reason).c_str());
  return false;
}

void BM_probe_copy(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const size_t bytes = size_t{1} << 30;
  Tensor a = filled({static_cast<int64_t>(bytes / 2)}), b = filled({static_cast<int64_t>(bytes / 2)});
  timed(st, [&] { cudaMemcpyAsync(b.raw_data(), a.raw_data(), bytes, cudaMemcpyDeviceToDevice, ctx().stream()); });
  st.counters["GBps"] = benchmark::Counter(2.0 * bytes * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_probe_gemm8192(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const int64_t n = 8192;
  Tensor x = filled({n, n}), w = filled({n, n}), out = filled({n, n});
  gpu::LtCall c;
  c.M = c.N = c.K = n;
  c.x = x.raw_data();
  c.ldx = n;
  c.w = w.raw_data();
  c.out = out.raw_data();
  c.ldo = n;
  timed(st, [&] { gpu::lt_matmul(c); });
  st.counters["TFLOPs"] = benchmark::Counter(2.0 * n * n * n * st.iterations() / 1e12, benchmark::Counter::kIsRate);
}

// GEMV at decode shapes: N × K weights, rotated over enough copies to exceed L2.
void BM_gemv(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const int64_t N = st.range(0), K = st.range(1);
  const size_t wbytes = static_cast<size_t>(N * K * 2);
  const int copies = static_cast<int>(std::max<size_t>(2, (3 * ctx().l2_bytes()) / wbytes + 1));
  std::vector<Tensor> ws;
  for (int i = 0; i < copies; ++i) ws.push_back(filled({N, K}));
  Tensor x = filled({1, K}), out = filled({1, N});
  int i = 0;
  timed(st, [&] { gpu::linear(out, x, ws[static_cast<size_t>(i++ % copies)], std::nullopt); });
  st.counters["GBps"] = benchmark::Counter(static_cast<double>(wbytes) * st.iterations() / 1e9,
                                           benchmark::Counter::kIsRate);
}

void BM_gemm(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  Tensor x = filled({M, K}), w = filled({N, K}), out = filled({M, N});
  timed(st, [&] { gpu::linear(out, x, w, std::nullopt); });
  st.counters["TFLOPs"] = benchmark::Counter(2.0 * M * N * K * st.iterations() / 1e12, benchmark::Counter::kIsRate);
}

// Attention: args T, S, H, Hkv, D, causal.
void BM_attn(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const int64_t T = st.range(0), S = st.range(1), H = st.range(2), Hkv = st.range(3), D = st.range(4);
  const bool causal = st.range(5) != 0;
  Tensor q = filled({T, H, D}, DType::BF16, 1.f), k = filled({S, Hkv, D}, DType::BF16, 1.f),
         v = filled({S, Hkv, D}, DType::BF16, 1.f), out = filled({T, H, D});
  ops::AttentionParams p;
  p.causal = causal;
  p.q_offset = S - T;
  timed(st, [&] { gpu::attention(out, q, k, v, p); });
  // Causal prefill does about half the pairs.
  const double pairs = causal && T > 1 ? 0.5 * T * S : static_cast<double>(T) * S;
  st.counters["TFLOPs"] = benchmark::Counter(4.0 * pairs * H * D * st.iterations() / 1e12, benchmark::Counter::kIsRate);
  st.counters["GBps"] = benchmark::Counter((2.0 * S * Hkv * D * 2 + 2.0 * T * H * D * 2) * st.iterations() / 1e9,
                                           benchmark::Counter::kIsRate);
}

void BM_rms_norm(benchmark::State& st) {
  if (!need_gpu(st)) return;
  const int64_t T = st.range(0), D = st.range(1);
  Tensor x = filled({T, D}), w = filled({D}, DType::BF16, 1.f), out = filled({T, D});
  timed(st, [&] { gpu::rms_norm(out, x, w, 1e-6f); });
  st.counters["GBps"] = benchmark::Counter(2.0 * T * D * 2 * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_probe_copy)->Name("probe/copy_1GiB")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
BENCHMARK(BM_probe_gemm8192)->Name("probe/gemm8192")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
// Qwen2.5-1.5B decode: q (1536×1536), k/v (256×1536), o, gate/up (8960×1536), down (1536×8960), lm_head.
BENCHMARK(BM_gemv)->Name("gemv")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.1)
    ->Args({1536, 1536})->Args({256, 1536})->Args({8960, 1536})->Args({1536, 8960})->Args({151936, 1536})
    ->Args({18944, 3584})->Args({512, 3584});
// Prefill 1792 tokens (1.5B) and one InternViT / AIMv2 tile's MLP.
BENCHMARK(BM_gemm)->Name("gemm")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.1)
    ->Args({1792, 1536, 1536})->Args({1792, 8960, 1536})->Args({1792, 1536, 8960})->Args({7175, 4096, 1024})
    ->Args({7168, 4096, 1536});
BENCHMARK(BM_attn)->Name("attn")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.1)
    ->Args({1792, 1792, 12, 2, 128, 1})->Args({1025, 1025, 16, 16, 64, 0})->Args({1024, 1024, 12, 12, 128, 0})
    ->Args({1, 2048, 12, 2, 128, 1})->Args({1, 2048, 28, 4, 128, 1});
BENCHMARK(BM_rms_norm)->Name("rms_norm")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.1)
    ->Args({1, 1536})->Args({1792, 1536});

int main(int argc, char** argv) {
  if (!sailvl::cuda::available()) {
    std::printf("bench_ops_cuda: skipped (%s)\n", sailvl::cuda::status().reason.c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#else  // built without the CUDA backend

int main() {
  std::printf("bench_ops_cuda: skipped (sailvl was built without the CUDA backend)\n");
  return 0;
}

#endif
