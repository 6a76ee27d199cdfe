// CUDA op microbenchmarks at the real SAIL-VL shapes (bench/bench_common.h, the same rows as
// bench_ops_cpu), each reported against a limit of the same card measured first, in the same run
// (docs/CONTRIBUTING.md item 13, docs/PERFORMANCE.md "How to measure").
//
// Probes (measured in main() before any row, and reported again as the first rows):
//   probe/copy_bw    cudaMemcpyAsync device-to-device of 1 GiB: GB/s, bytes read + bytes written
//                    (the ceiling of every memory-bound kernel; H100 ~3.0, H200 ~4.1 TB/s)
//   probe/gemm8192   cuBLASLt BF16 8192³ (F32 accumulate) through ops::cuda::lt_matmul: TFLOP/s
//                    (the ceiling of every compute-bound kernel; ~755 on H200)
// The limit is each probe's fastest repetition. Then every op of ops/ops.h as model/*.cpp calls it on
// CUDA: BF16 activations, weights, biases and norm weights; F32 logits (LM head output, sampling);
// I64 ids/positions/rows:
//   gemv/* gemm/*   linear: Qwen2.5-1.5B / 7B decode (M = 1) and prefill (1792, 3328 tokens),
//                   InternViT-300M / AIMv2-H per tile and at 7 / 13 tiles, projector w1
//   attn/*          causal GQA prefill (1792, 3328), decode at contexts 512 / 2048 / 8192, ViT tiles
//   rms_norm, layer_norm, rope, gelu_erf, silu_mul, add, add_scaled, embedding, scatter_rows,
//   pixel_shuffle_v2, patch_embed, sample (greedy, temperature + top-k 50, top-p 0.9 over all of V)
// Timing: per row, 3 warm-up calls, one calibration call, then `reps` calls (enough for ~30 ms of
// kernel time, 10..200), each preceded by a cudaMemsetAsync over 2× the L2 size (so weights, KV and
// activations come from HBM, as in the model) and bracketed by cudaEvents on the ops' stream; the
// flush is outside the events. Calls are queued back to back (one host sync per row), so a row's time
// is device time; ops that synchronise inside (embedding and scatter_rows check their indices on the
// host, sample copies the id back) include that round trip. Reported time = the median call
// (Google Benchmark manual time, one "iteration" per row); the label says how many calls.
// Counters: GB/s (every operand read once, every output written once), TFLOP/s (GEMM 2·M·N·K;
// attention 4·Dh·H per visible (query, key) pair), pct_peak = % of the probe named in the label
// (gemm8192 for GEMMs, prefill/ViT attention and patch_embed; copy_bw for everything else).
//
//   build/bench_ops_cuda                         every row (~130; estimated 20-40 s on an H100: at most
//                                                200 calls per row, ~30 ms of device time each)
//   build/bench_ops_cuda --benchmark_filter='^(probe|gemv)/'
//   build/bench_ops_cuda --benchmark_out=ops.json --benchmark_out_format=json
// scripts/gpu-check.sh runs it and its summary table greps the probe, gemv, gemm, attn and rms_norm
// rows; the others are in its bench log and JSON. CI runs it with --benchmark_min_time=0.01 (ignored:
// each row sets its own call count). Without a GPU, or built without the CUDA backend, it prints why
// and exits 0. A row whose op throws is reported with the error, the remaining rows still run, and
// the exit status is 1. Written and compiled without a GPU at hand: its first GPU run is its test.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "tensor/cuda_runtime.h"

#ifdef SAILVL_HAS_CUDA
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cuda/context.h"
#include "ops/cuda/cuda_ops.h"
#include "ops/cuda/dev/attention_wmma.h"
#include "ops/cuda/linear_detail.h"
#include "tensor/tensor.h"

using namespace sailvl;
namespace gpu = sailvl::ops::cuda;
namespace bn = sailvl::bench;

namespace {

gpu::Context& ctx() { return gpu::Context::get(0); }
const Device kGpu = Device::cuda(0);

// ---- device data ----

// Values in [-scale, scale) (F32 or BF16): 2^20 generated on the host, copied up, then doubled on the
// device (D2D copies) until the tensor is full — fast even for the 1.1 GB LM head of the 7B.
void fill_device(const Tensor& t, uint64_t seed, float scale) {
  const int64_t n = t.numel();
  if (n == 0) return;
  const size_t es = dtype_size(t.dtype());
  const int64_t head = std::min<int64_t>(n, int64_t{1} << 20);
  std::vector<uint8_t> h(static_cast<size_t>(head) * es);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < head; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const float v = scale * (static_cast<float>(s >> 40) * 0x1p-23f - 1.0f);
    if (t.dtype() == DType::F32) {
      std::memcpy(&h[static_cast<size_t>(i) * 4], &v, 4);
    } else {
      const uint16_t b = f32_to_bf16(v);
      std::memcpy(&h[static_cast<size_t>(i) * 2], &b, 2);
    }
  }
  auto* base = static_cast<uint8_t*>(t.raw_data());
  CUDA_CHECK(cudaMemcpy(base, h.data(), h.size(), cudaMemcpyHostToDevice));
  for (int64_t done = head; done < n;) {
    const int64_t len = std::min(done, n - done);  // source [0, len) never overlaps [done, done + len)
    CUDA_CHECK(cudaMemcpy(base + static_cast<size_t>(done) * es, base, static_cast<size_t>(len) * es,
                          cudaMemcpyDeviceToDevice));
    done += len;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
}

// A filled device tensor (inputs, weights).
Tensor in(const Shape& shape, DType dt, uint64_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape, dt, kGpu);
  fill_device(t, seed, scale);
  return t;
}

// A zeroed device tensor (outputs: never uninitialised memory, even where an op reads its output).
Tensor out(const Shape& shape, DType dt = DType::BF16) {
  Tensor t = Tensor::empty(shape, dt, kGpu);
  CUDA_CHECK(cudaMemset(t.raw_data(), 0, t.nbytes()));
  return t;
}

// An I64 device vector from host values.
Tensor i64(const std::vector<int64_t>& v) {
  Tensor h = Tensor::empty({static_cast<int64_t>(v.size())}, DType::I64);
  std::copy(v.begin(), v.end(), h.data<int64_t>());
  return h.to(kGpu);
}

// ---- timing ----

// 2× the L2 size, rewritten before every timed call so that nothing the call reads is still cached
// (as nvbench does; the flush's dirty lines drain during the call, a small cost the model pays too).
// (This buffer and the event pool below are never freed: they would otherwise be released by static
// destructors after the CUDA context and the caching allocator may be gone.)
void flush_l2() {
  static const Tensor* buf = new Tensor(Tensor::empty({static_cast<int64_t>(ctx().l2_bytes())}, DType::BF16, kGpu));
  static int byte = 0;
  CUDA_CHECK(cudaMemsetAsync(buf->raw_data(), ++byte & 0xff, buf->nbytes(), ctx().stream()));
}

cudaEvent_t event(size_t i) {
  static std::vector<cudaEvent_t>* pool = new std::vector<cudaEvent_t>;
  while (pool->size() <= i) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreate(&e));
    pool->push_back(e);
  }
  return (*pool)[i];
}

struct Timing {
  double median_s = 0, min_s = 0;
  int reps = 0;
};

constexpr double kTargetSeconds = 0.03;  // device time per row
constexpr int kWarmup = 3, kMinReps = 10, kMaxReps = 200;

// Times `reps` calls of fn, each after an L2 flush and between its own pair of events.
std::vector<double> time_calls(const std::function<void()>& fn, int reps) {
  cudaStream_t s = ctx().stream();
  for (int i = 0; i < reps; ++i) {
    flush_l2();
    CUDA_CHECK(cudaEventRecord(event(2 * static_cast<size_t>(i)), s));
    fn();
    CUDA_CHECK(cudaEventRecord(event(2 * static_cast<size_t>(i) + 1), s));
  }
  CUDA_CHECK(cudaEventSynchronize(event(2 * static_cast<size_t>(reps) - 1)));
  std::vector<double> t(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, event(2 * static_cast<size_t>(i)), event(2 * static_cast<size_t>(i) + 1)));
    t[static_cast<size_t>(i)] = ms * 1e-3;
  }
  return t;
}

Timing measure(const std::function<void()>& fn) {
  for (int i = 0; i < kWarmup; ++i) {  // cuBLASLt plans, module load, scratch growth
    flush_l2();
    fn();
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  const double once = std::max(time_calls(fn, 1)[0], 1e-6);
  Timing r;
  r.reps = std::clamp(static_cast<int>(std::ceil(kTargetSeconds / once)), kMinReps, kMaxReps);
  std::vector<double> t = time_calls(fn, r.reps);
  std::sort(t.begin(), t.end());
  r.median_s = t[t.size() / 2];
  r.min_s = t.front();
  return r;
}

// ---- limits and counters ----

struct Probes {
  double copy_gbs = 0, gemm_tflops = 0;
};
Probes g_probes;
int g_failures = 0;

constexpr size_t kCopyBytes = size_t{1} << 30;
constexpr int64_t kProbeN = 8192;

void copy_1gib(const Tensor& dst, const Tensor& src) {
  CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), kCopyBytes, cudaMemcpyDeviceToDevice, ctx().stream()));
}

gpu::LtCall probe_gemm_call(const Tensor& x, const Tensor& w, const Tensor& o) {
  gpu::LtCall c;
  c.M = c.N = c.K = kProbeN;
  c.x = x.raw_data();
  c.ldx = kProbeN;
  c.w = w.raw_data();
  c.out = o.raw_data();
  c.ldo = kProbeN;
  return c;
}

void measure_probes() {
  {
    const Tensor a = in({static_cast<int64_t>(kCopyBytes / 2)}, DType::BF16, 1);
    const Tensor b = out({static_cast<int64_t>(kCopyBytes / 2)});
    g_probes.copy_gbs = 2.0 * kCopyBytes / measure([&] { copy_1gib(b, a); }).min_s / 1e9;
  }
  const Tensor x = in({kProbeN, kProbeN}, DType::BF16, 2), w = in({kProbeN, kProbeN}, DType::BF16, 3, 0.05f);
  const Tensor o = out({kProbeN, kProbeN});
  const gpu::LtCall c = probe_gemm_call(x, w, o);
  const Timing t = measure([&] { gpu::lt_matmul(c); });
  g_probes.gemm_tflops = 2.0 * kProbeN * kProbeN * kProbeN / t.min_s / 1e12;
}

enum class Limit { Gemm, Copy, None };

// Runs the row's one Google Benchmark iteration: measures fn, reports the median as the manual time.
void run_row(benchmark::State& st, double flops, double bytes, Limit lim, const std::function<void()>& fn) {
  Timing t;
  for (auto _ : st) {
    t = measure(fn);
    st.SetIterationTime(t.median_s);
  }
  const double sec = std::max(t.median_s, 1e-9);
  const double tflops = flops / sec / 1e12, gbs = bytes / sec / 1e9;
  if (flops > 0) st.counters["TFLOP/s"] = tflops;
  if (bytes > 0) st.counters["GB/s"] = gbs;
  std::string label;
  if (lim == Limit::Gemm) {
    st.counters["pct_peak"] = 100 * tflops / g_probes.gemm_tflops;
    label = "pct of gemm8192, ";
  } else if (lim == Limit::Copy) {
    st.counters["pct_peak"] = 100 * gbs / g_probes.copy_gbs;
    label = "pct of copy_bw, ";
  }
  char tail[64];
  std::snprintf(tail, sizeof tail, "median of %d, min %.2f us", t.reps, t.min_s * 1e6);
  st.SetLabel(label + tail);
}

constexpr double B2 = 2, F32 = 4;  // bytes per BF16 / F32 element

// ---- probe rows ----

void BM_ProbeCopy(benchmark::State& st) {
  const Tensor a = in({static_cast<int64_t>(kCopyBytes / 2)}, DType::BF16, 1);
  const Tensor b = out({static_cast<int64_t>(kCopyBytes / 2)});
  run_row(st, 0, 2.0 * kCopyBytes, Limit::None, [&] { copy_1gib(b, a); });
}

void BM_ProbeGemm(benchmark::State& st) {
  const Tensor x = in({kProbeN, kProbeN}, DType::BF16, 2), w = in({kProbeN, kProbeN}, DType::BF16, 3, 0.05f);
  const Tensor o = out({kProbeN, kProbeN});
  const gpu::LtCall c = probe_gemm_call(x, w, o);
  run_row(st, 2.0 * kProbeN * kProbeN * kProbeN, 3.0 * kProbeN * kProbeN * B2, Limit::None, [&] { gpu::lt_matmul(c); });
}

// ---- ops ----

void BM_Linear(benchmark::State& st, const bn::LinearRow& r) {
  const bool lm_head = r.N > 100000;  // logits are F32 (Qwen2::forward)
  const Tensor x = in({r.M, r.K}, DType::BF16, 4), w = in({r.N, r.K}, DType::BF16, 5, 0.05f);
  const Tensor o = out({r.M, r.N}, lm_head ? DType::F32 : DType::BF16);
  std::optional<Tensor> b;
  if (r.bias) b = in({r.N}, DType::BF16, 6);
  const double bytes = r.N * r.K * B2 + r.M * r.K * B2 + r.M * r.N * (lm_head ? F32 : B2) + (r.bias ? r.N * B2 : 0);
  // M <= 4 is the GEMV kernel (memory-bound), larger M cuBLASLt (compute-bound).
  run_row(st, r.flops(), bytes, r.M <= 4 ? Limit::Copy : Limit::Gemm, [&] { gpu::linear(o, x, w, b); });
}

void BM_Attention(benchmark::State& st, const bn::AttentionRow& r) {
  const Tensor q = in({r.T, r.H, r.Dh}, DType::BF16, 7), k = in({r.S, r.Hkv, r.Dh}, DType::BF16, 8);
  const Tensor v = in({r.S, r.Hkv, r.Dh}, DType::BF16, 9), o = out({r.T, r.H, r.Dh});
  ops::AttentionParams p;
  p.causal = r.causal;
  p.q_offset = r.S - r.T;
  const double bytes = (2.0 * r.S * r.Hkv * r.Dh + 2.0 * r.T * r.H * r.Dh) * B2;
  run_row(st, r.flops(), bytes, r.T <= 4 ? Limit::Copy : Limit::Gemm, [&] { gpu::attention(o, q, k, v, p); });
}

void BM_RmsNorm(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor x = in({r.T, r.D}, DType::BF16, 10), w = in({r.D}, DType::BF16, 11), o = out({r.T, r.D});
  run_row(st, 0, (2.0 * r.T * r.D + r.D) * B2, Limit::Copy, [&] { gpu::rms_norm(o, x, w, 1e-6f); });
}

void BM_LayerNorm(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor x = in({r.T, r.D}, DType::BF16, 12), w = in({r.D}, DType::BF16, 13), b = in({r.D}, DType::BF16, 14);
  const Tensor o = out({r.T, r.D});
  run_row(st, 0, (2.0 * r.T * r.D + 2.0 * r.D) * B2, Limit::Copy, [&] { gpu::layer_norm(o, x, w, b, 1e-6f); });
}

void BM_Rope(benchmark::State& st, const bn::RopeRow& r) {
  const Tensor x = in({r.T, r.H, r.Dh}, DType::BF16, 15);
  std::vector<int64_t> p(static_cast<size_t>(r.T));
  for (int64_t t = 0; t < r.T; ++t) p[static_cast<size_t>(t)] = (r.T == 1 ? 2048 : 0) + t;
  const Tensor pos = i64(p);
  // In place, as the model calls it (a rotation keeps the values bounded).
  run_row(st, 0, 2.0 * r.T * r.H * r.Dh * B2 + r.T * 8.0, Limit::Copy, [&] { gpu::rope(x, pos, 1e6); });
}

// gelu_erf and silu_mul run in place in the model; out ≠ x here so repeated calls see the same input.
void BM_GeluErf(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor x = in({r.T, r.D}, DType::BF16, 16, 3.0f), o = out({r.T, r.D});
  run_row(st, 0, 2.0 * r.T * r.D * B2, Limit::Copy, [&] { gpu::gelu_erf(o, x); });
}

void BM_SiluMul(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor g = in({r.T, r.D}, DType::BF16, 17, 3.0f), u = in({r.T, r.D}, DType::BF16, 18);
  const Tensor o = out({r.T, r.D});
  run_row(st, 0, 3.0 * r.T * r.D * B2, Limit::Copy, [&] { gpu::silu_mul(o, g, u); });
}

void BM_Add(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor x = in({r.T, r.D}, DType::BF16, 19), y = in({r.T, r.D}, DType::BF16, 20, 1e-3f);
  run_row(st, 0, 3.0 * r.T * r.D * B2, Limit::Copy, [&] { gpu::add(x, x, y); });  // x = x + y
}

void BM_AddScaled(benchmark::State& st, const bn::RowsRow& r) {
  const Tensor h = in({r.T, r.D}, DType::BF16, 21), y = in({r.T, r.D}, DType::BF16, 22, 1e-3f);
  const Tensor ls = in({r.D}, DType::BF16, 23, 0.1f);
  run_row(st, 0, (3.0 * r.T * r.D + r.D) * B2, Limit::Copy, [&] { gpu::add_scaled(h, h, ls, y); });  // h += ls ⊙ y
}

void BM_Embedding(benchmark::State& st, const bn::EmbeddingRow& r) {
  const Tensor table = in({r.V, r.D}, DType::BF16, 24), o = out({r.T, r.D});
  std::vector<int64_t> ids(static_cast<size_t>(r.T));
  uint64_t s = 25;
  for (auto& id : ids) id = static_cast<int64_t>((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) % r.V;
  const Tensor idt = i64(ids);
  run_row(st, 0, r.T * r.D * 2 * B2 + r.T * 8.0, Limit::Copy, [&] { gpu::embedding(o, idt, table); });
}

void BM_ScatterRows(benchmark::State& st, const bn::ScatterRow& r) {
  const Tensor dst = in({r.R, r.D}, DType::BF16, 26), src = in({r.K, r.D}, DType::BF16, 27);
  std::vector<int64_t> rows(static_cast<size_t>(r.K));
  for (int64_t k = 0; k < r.K; ++k) rows[static_cast<size_t>(k)] = 32 + k;  // the image span
  const Tensor rt = i64(rows);
  run_row(st, 0, 2.0 * r.K * r.D * B2 + r.K * 8.0, Limit::Copy, [&] { gpu::scatter_rows(dst, rt, src); });
}

void BM_PixelShuffle(benchmark::State& st, const bn::ShuffleRow& r) {
  const Tensor x = in({r.T, r.N, r.C}, DType::BF16, 28), o = out({r.T, r.N / 4, 4 * r.C});
  run_row(st, 0, 2.0 * r.T * r.N * r.C * B2, Limit::Copy, [&] { gpu::pixel_shuffle_v2(o, x); });
}

void BM_PatchEmbed(benchmark::State& st, const bn::PatchRow& r) {
  const int64_t G = r.S / r.P;
  const Tensor px = in({r.T, 3, r.S, r.S}, DType::BF16, 29), w = in({r.C, 3, r.P, r.P}, DType::BF16, 30, 0.05f);
  const Tensor b = in({r.C}, DType::BF16, 31), o = out({r.T, G * G, r.C});
  const double bytes = (r.T * 3.0 * r.S * r.S + r.T * G * G * r.C + r.C + r.C * 3.0 * r.P * r.P) * B2;
  run_row(st, r.flops(), bytes, Limit::Gemm, [&] { gpu::patch_embed(o, px, w, b); });
}

void BM_Sample(benchmark::State& st, const bn::SampleRow& r) {
  const Tensor logits = in({r.V}, DType::F32, 32, 8.0f);
  const ops::SamplingParams p = bn::sampling_params(r);
  uint64_t step = 0;
  run_row(st, 0, r.V * F32, Limit::Copy, [&] { benchmark::DoNotOptimize(gpu::sample(logits, p, step++)); });
}

// ---- registration ----

// A row: one Google Benchmark iteration timed manually; an exception (a failed precondition or CUDA
// call) marks the row as failed and the run goes on.
template <class Body>
void row(const std::string& name, Body body) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [body](benchmark::State& st) {
                                 try {
                                   body(st);
                                 } catch (const std::exception& e) {
                                   ++g_failures;
                                   st.SkipWithError(e.what());
                                 }
                               })
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMicrosecond);
}

template <class Row, class Fn>
void add(const std::string& op, const Row& r, const std::string& dimstr, Fn fn) {
  row(op + "/" + r.tag + "/" + dimstr, [r, fn](benchmark::State& st) { fn(st, r); });
}

void register_all() {
  using bn::dims;
  row("probe/copy_bw", BM_ProbeCopy);
  row("probe/gemm8192/M:8192/N:8192/K:8192", BM_ProbeGemm);
  for (const auto& r : bn::linear_rows())
    add(r.M <= 4 ? "gemv" : "gemm", r, dims({{"M", r.M}, {"N", r.N}, {"K", r.K}}), BM_Linear);
  for (const auto& r : bn::attention_rows())
    add("attn", r, dims({{"T", r.T}, {"S", r.S}, {"H", r.H}, {"Hkv", r.Hkv}, {"Dh", r.Dh}}), BM_Attention);
  for (const auto& r : bn::rms_norm_rows()) add("rms_norm", r, dims({{"T", r.T}, {"D", r.D}}), BM_RmsNorm);
  for (const auto& r : bn::layer_norm_rows()) add("layer_norm", r, dims({{"T", r.T}, {"D", r.D}}), BM_LayerNorm);
  for (const auto& r : bn::rope_rows()) add("rope", r, dims({{"T", r.T}, {"H", r.H}, {"Dh", r.Dh}}), BM_Rope);
  for (const auto& r : bn::gelu_rows()) add("gelu_erf", r, dims({{"T", r.T}, {"D", r.D}}), BM_GeluErf);
  for (const auto& r : bn::silu_mul_rows()) add("silu_mul", r, dims({{"T", r.T}, {"F", r.D}}), BM_SiluMul);
  for (const auto& r : bn::add_rows()) add("add", r, dims({{"T", r.T}, {"D", r.D}}), BM_Add);
  for (const auto& r : bn::add_scaled_rows()) add("add_scaled", r, dims({{"T", r.T}, {"D", r.D}}), BM_AddScaled);
  for (const auto& r : bn::embedding_rows())
    add("embedding", r, dims({{"T", r.T}, {"V", r.V}, {"D", r.D}}), BM_Embedding);
  for (const auto& r : bn::scatter_rows_rows())
    add("scatter_rows", r, dims({{"K", r.K}, {"R", r.R}, {"D", r.D}}), BM_ScatterRows);
  for (const auto& r : bn::pixel_shuffle_rows())
    add("pixel_shuffle_v2", r, dims({{"T", r.T}, {"N", r.N}, {"C", r.C}}), BM_PixelShuffle);
  for (const auto& r : bn::patch_embed_rows())
    add("patch_embed", r, dims({{"T", r.T}, {"S", r.S}, {"P", r.P}, {"C", r.C}}), BM_PatchEmbed);
  for (const auto& r : bn::sample_rows()) add("sample", r, dims({{"V", r.V}}), BM_Sample);
}

}  // namespace

int main(int argc, char** argv) {
  if (!sailvl::cuda::available()) {
    std::printf("bench_ops_cuda: skipped (%s)\n", sailvl::cuda::status().reason.c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // SAILVL_CUDA_ATTENTION=wmma: time the first (WMMA) prefill attention kernel instead of the
  // production one, for the comparison in docs/KERNELS-CUDA.md.
  if (const char* e = std::getenv("SAILVL_CUDA_ATTENTION"); e && std::string(e) == "wmma") {
    sailvl::ops::cuda::dev::use_wmma_prefill(true);
    std::printf("bench_ops_cuda: prefill attention = the WMMA kernel (ops/cuda/dev/attention_wmma.cu)\n");
  }
  try {
    measure_probes();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ops_cuda: the probes failed: %s\n", e.what());
    return 1;
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "bench_ops_cuda: %s, L2 %.0f MiB; limits: copy %.0f GB/s (read + written), cuBLASLt BF16 8192^3 %.0f TFLOP/s\n",
      prop.name, ctx().l2_bytes() / 1048576.0, g_probes.copy_gbs, g_probes.gemm_tflops);
  std::fflush(stdout);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_failures) std::fprintf(stderr, "bench_ops_cuda: %d rows failed\n", g_failures);
  return g_failures ? 1 : 0;
}

#else  // built without the CUDA backend

int main() {
  std::printf("bench_ops_cuda: skipped (sailvl was built without the CUDA backend)\n");
  return 0;
}

#endif
