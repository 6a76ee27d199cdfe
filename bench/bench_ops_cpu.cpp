// CPU op microbenchmarks at the real SAIL-VL shapes, each reported against a limit of this machine
// measured first, in the same binary and run (docs/CONTRIBUTING.md item 13, docs/PERFORMANCE.md "How to measure").
//
// Limits (ops/probes.h, the probes `sailvl bench` and `--profile` use, with 256 MiB buffers; measured
// once before any row, best of 3 runs, with OMP_NUM_THREADS threads; the first row, probe/limits,
// shows them):
//   read_bw   multi-threaded sum over 512 MiB read as the GEMV reads its weights, 8 rows at a time
//             (8 sequential streams per thread): GB/s a reader can stream
//   copy_bw   multi-threaded memcpy of 256 MiB: GB/s, bytes read + bytes written
//   fma_peak  every thread runs 12 independent chains of 8-wide FMAs in registers: GFLOP/s, the
//             compute limit of any F32 GEMM on this machine
// then ref/eigen_sgemm (Eigen's multi-threaded F32 GEMM at 1792×1536×1536: a reference row, not a
// limit — our packed GEMM is faster), then every op of ops/ops.h, called as model/*.cpp calls it
// (F32 activations, BF16 weights, F32 biases/norm weights) at the shapes of bench/bench_common.h:
//   gemv/*  gemm/*          linear: Qwen2.5-1.5B / 7B decode (M = 1) and prefill (1792, 3328 tokens),
//                           InternViT-300M / AIMv2-H per tile and at 7 / 13 tiles, projector w1
//   gemv_q8/* gemv_q4/*     linear with quantised weights (ops/quant.h): both LLMs' decode shapes; the
//   gemm_q8/* gemm_q4/*     GEMM at the 1.5B's prefill q and gate/up. Bytes = codes + scales (+ x, out):
//                           what the kernel reads. The GEMV runs on the best instruction set;
//                           SAILVL_QUANT_ISA=avx2|scalar forces another.
//   gemv_cmp/*              (SAILVL_BENCH_FULL=1) BF16, q8 and q4 GEMVs of each decode shape called in
//                           turn: the median call of each and the speed-ups (noise hits all three alike)
//   gemv_q4study/*          (SAILVL_BENCH_FULL=1) the same for the q4 format study's candidates
//                           (symmetric / asymmetric, G = 32 / 64 / 128) at the 1.5B gate/up and down
//   attn/*                  causal GQA prefill (1792, 3328), decode at contexts 512 / 2048 / 8192,
//                           one ViT tile (bidirectional) for each tower
//   rms_norm, layer_norm, rope, gelu_erf, silu_mul, add, add_scaled, embedding, scatter_rows,
//   pixel_shuffle_v2, patch_embed, sample (greedy, temperature + top-k 50, top-p 0.9 over all of V)
// Counters (per second of wall-clock time, the time Google Benchmark reports with UseRealTime):
//   GFLOP/s    useful FLOPs (GEMM 2·M·N·K; attention 4·Dh·H per visible (query, key) pair)
//   best_GB/s, best_pct   GEMV rows: the same for the fastest single call (robust to preemption on a
//              shared machine; the mean includes every scheduler pause)
//   GB/s       bytes the op must move: every operand read once and every output written once
//              (F32 activations, BF16 or q8/q4 weights; GEMV: the weight bytes dominate)
//   pct_peak   % of the limit that bounds the op, named in the row's label:
//                fma_peak  compute-bound (GEMM, prefill/ViT attention, patch_embed): GFLOP/s ÷ fma_peak
//                read_bw   read-only streams (GEMV, decode attention's K/V, sampling): GB/s ÷ read_bw;
//                          these rows also report pct_copy = GB/s ÷ copy_bw
//                copy_bw   read + write (norms, rope, elementwise, embedding, scatter, pixel shuffle)
// Cold operands: a GEMV's weights and decode attention's K/V are read once per token in the model
// (a decode step streams GBs between two uses), so those rows rotate over copies totalling ≥ 2× the
// last-level cache, and every iteration reads DRAM. Decode-sized norms/elementwise rows (one row of
// 1536-18944 floats) stay in cache as they do in the model: they measure call overhead, and their
// pct_peak may pass 100. So may any row when the machine's load drops after the probes ran.
// Inputs are built once per row (Google Benchmark calls a row's function several times while it
// sizes the iteration count) and the [V, D] vocabulary matrix once per model.
//
// Modes:
//   CI smoke (scripts/test.sh):  build/bench_ops_cpu --benchmark_min_time=0.01
//       (Debian's Google Benchmark 1.7 takes a plain number of seconds, not "0.01s"). Rows costing
//       more than 20 GFLOP per call (bench_common.h kSmokeFlops: the 1.5B/7B prefill MLPs, the 7B
//       prefill q/o, the 7- and 13-tile vision GEMMs but InternViT's 7-tile q/k/v/o, the projector,
//       prefill attention but the 1.5B's at 1792, the quantised 1.5B prefill gate/up) and the gemv_cmp /
//       gemv_q4study rows are not registered: 119 op rows, ~20-25 s with 2 threads on the shared 2-core
//       development VM (the GEMV rows build their rotation sets first: ~1 s each).
//   Full: SAILVL_BENCH_FULL=1 build/bench_ops_cpu [--benchmark_min_time=0.5]   all 169 op rows; the
//       36 heavy ones are 3.7 TFLOP per pass (the 7B prefill gate/up at 3328 tokens alone is 450 GFLOP,
//       seconds per call): ~2 minutes with --benchmark_min_time=0.01 on those 2 cores.
//   One op: --benchmark_filter='^gemm/1.5b/prefill1792' (names are <op>/<model>/<phase>/<what>/<dims>).
// Threads: OMP_NUM_THREADS (default: all cores); the probes use the same count. Run nothing else
// meanwhile; on a shared machine compare pct_peak within one run, and prefer OMP_NUM_THREADS=1 (a
// 2-thread op on a loaded 2-core box waits for scheduler time slices: small rows quantise to 4 ms).
// A row whose op throws is reported with the error, the other rows still run, and the exit status is 1.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/quant_gemv.h"
#include "ops/ops.h"
#include "ops/probes.h"

using namespace sailvl;
namespace bn = sailvl::bench;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Deterministic values in [-scale, scale) for an F32 or BF16 tensor: the first 2^20 elements from a
// xorshift generator, the rest copies of them (setup must stay cheap for the CI mode; a period of
// 4 MiB is enough for every op here, and sampling's 152k logits are all distinct draws).
void fill(const Tensor& t, uint64_t seed, float scale = 1.0f) {
  const int64_t n = t.numel(), head = std::min<int64_t>(n, int64_t{1} << 20);
  const size_t es = dtype_size(t.dtype());
  uint8_t* base = static_cast<uint8_t*>(t.raw_data());
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < head; ++i) {
    const float v = scale * (static_cast<float>(xorshift(s) >> 40) * 0x1p-23f - 1.0f);
    if (t.dtype() == DType::F32)
      t.data<float>()[i] = v;
    else
      t.data<uint16_t>()[i] = f32_to_bf16(v);
  }
  const int64_t chunks = (n + head - 1) / head;
#pragma omp parallel for schedule(static)
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t lo = c * head, len = std::min(head, n - lo);
    std::memcpy(base + lo * es, base, static_cast<size_t>(len) * es);
  }
}

// I64 [n] of ids uniform in [0, bound).
Tensor random_ids(int64_t n, int64_t bound, uint64_t seed) {
  Tensor t = Tensor::empty({n}, DType::I64);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; ++i)
    t.data<int64_t>()[i] = static_cast<int64_t>(xorshift(s) % static_cast<uint64_t>(bound));
  return t;
}

// ---- cold operands ----

// The cache the rotation has to defeat. A VM may report the whole socket's L3 (the EPYC VM says
// 256 MiB; lscpu says 32 MiB, what one CCX sees), but on a mesh-L3 Xeon (the 2026-12 CI VMs: 260 MiB)
// a VM may really use much of it: rows rotating over 128 MiB read partly from L3 there (the 1.5B
// q_proj GEMV at 2 threads reported 114 % of the read probe). So the value is capped at 256 MiB.
size_t llc_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const size_t mib = size_t{1} << 20;
  return l3 > 0 ? std::min<size_t>(static_cast<size_t>(l3), 256 * mib) : 32 * mib;
}

// Copies of an operand of `bytes` so that cycling through them touches >= 2x the LLC.
int64_t rotation_copies(size_t bytes) {
  return std::clamp<int64_t>(static_cast<int64_t>((2 * llc_bytes() + bytes - 1) / std::max<size_t>(bytes, 1)), 1, 4096);
}

// ---- per-row data ----

// The tensors of the row being run. Google Benchmark calls a row's function several times while it
// sizes the iteration count; building (and page-faulting) GBs of inputs on every call would make the
// CI smoke run minutes long, so a row's tensors live here until the next row starts.
class RowData {
 public:
  void start(const std::string& row) {
    if (row == row_) return;
    tensors_.clear();
    sets_.clear();
    wsets_.clear();
    row_ = row;
  }
  // Filled once per row.
  Tensor in(const std::string& key, const Shape& shape, DType dt, uint64_t seed, float scale = 1.0f) {
    return get(key, [&] {
      Tensor t = Tensor::empty(shape, dt);
      fill(t, seed, scale);
      return t;
    });
  }
  // Written by the op (first touched by the warm-up call).
  Tensor out(const std::string& key, const Shape& shape, DType dt = DType::F32) {
    return get(key, [&] { return Tensor::empty(shape, dt); });
  }
  template <class Make>
  Tensor get(const std::string& key, Make&& make) {
    auto it = tensors_.find(key);
    if (it == tensors_.end()) it = tensors_.emplace(key, make()).first;
    return it->second;
  }
  // t and clones of it totalling >= 2x the LLC: a cold operand (weights, KV cache) that every
  // iteration must read from DRAM, as the model does.
  const std::vector<Tensor>& rotated(const std::string& key, const Tensor& t) {
    auto it = sets_.find(key);
    if (it == sets_.end()) {
      std::vector<Tensor> v{t};
      for (int64_t i = 1, n = rotation_copies(t.nbytes()); i < n; ++i) v.push_back(t.clone());
      it = sets_.emplace(key, std::move(v)).first;
    }
    return it->second;
  }
  // The same for a (quantised) weight: copies of codes and scales, >= 2x the LLC together.
  const std::vector<ops::Weight>& rotated_weights(const std::string& key, const ops::Weight& w) {
    auto it = wsets_.find(key);
    if (it == wsets_.end()) {
      std::vector<ops::Weight> v{w};
      for (int64_t i = 1, n = rotation_copies(w.nbytes()); i < n; ++i) {
        ops::Weight c = w;
        c.data = w.data.clone();
        if (w.scale.defined()) c.scale = w.scale.clone();
        if (w.zero.defined()) c.zero = w.zero.clone();
        v.push_back(std::move(c));
      }
      it = wsets_.emplace(key, std::move(v)).first;
    }
    return it->second;
  }

 private:
  std::string row_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::vector<Tensor>> sets_;
  std::map<std::string, std::vector<ops::Weight>> wsets_;
};

RowData& data() {
  static RowData d;
  return d;
}

// A [V, D] BF16 vocabulary matrix (embedding table, LM head), kept across rows: the LM-head GEMV and
// the embedding rows of one model share it instead of filling 0.5-1.1 GB each.
Tensor vocab_matrix(int64_t V, int64_t D) {
  static Tensor t;
  if (!t.defined() || t.size(0) != V || t.size(1) != D) {
    t = Tensor();
    t = Tensor::empty({V, D}, DType::BF16);
    fill(t, 2, 0.05f);
  }
  return t;
}

// ---- probes ----

// The machine's limits (ops/probes.h: the same probes `sailvl bench` and `--profile` use), measured
// once with 256 MiB buffers (512 MiB read, 2 × 256 MiB copied: far past any L3 this runs on) and
// reused by every pct_peak counter.
const ops::HostLimits& probes() {
  static const ops::HostLimits p = ops::measure_host_limits(256);
  return p;
}

// ---- counters ----

enum class Limit { Fma, Read, Copy, None };

// Runs the benchmark loop and returns its wall-clock seconds (what UseRealTime() reports), so the
// counters below are plain numbers per second rather than Google Benchmark rates (printed "x/s").
template <class Body>
double timed_loop(benchmark::State& st, Body&& body) {
  const auto t0 = Clock::now();
  for (auto _ : st) body();
  return seconds_since(t0);
}

// The same, timing every call too: *best = the fastest call. On a shared machine a GEMV call that
// was not preempted shows what the kernel and the memory system can do; the mean shows the rest.
template <class Body>
double timed_loop_best(benchmark::State& st, Body&& body, double* best) {
  const auto t0 = Clock::now();
  *best = 1e30;
  for (auto _ : st) {
    const auto c0 = Clock::now();
    body();
    *best = std::min(*best, seconds_since(c0));
  }
  return seconds_since(t0);
}

// flops and bytes per call; secs for all st.iterations() calls.
void report(benchmark::State& st, double secs, double flops, double bytes, Limit lim) {
  const double calls_per_s = static_cast<double>(st.iterations()) / std::max(secs, 1e-12);
  const double gflops = flops * calls_per_s / 1e9, gbs = bytes * calls_per_s / 1e9;
  const ops::HostLimits& p = probes();
  if (flops > 0) st.counters["GFLOP/s"] = gflops;
  if (bytes > 0) st.counters["GB/s"] = gbs;
  switch (lim) {
    case Limit::Fma:
      st.counters["pct_peak"] = 100 * gflops / p.fma_gflops;
      st.SetLabel("pct of fma_peak");
      break;
    case Limit::Read:
      st.counters["pct_peak"] = 100 * gbs / p.read_gbs;
      st.counters["pct_copy"] = 100 * gbs / p.copy_gbs;
      st.SetLabel("pct of read_bw");
      break;
    case Limit::Copy:
      st.counters["pct_peak"] = 100 * gbs / p.copy_gbs;
      st.SetLabel("pct of copy_bw");
      break;
    case Limit::None: break;
  }
}

// The GEMV rows add the fastest call: best_GB/s and best_pct (of read_bw).
void report_best(benchmark::State& st, double best_secs, double bytes) {
  st.counters["best_GB/s"] = bytes / best_secs / 1e9;
  st.counters["best_pct"] = 100 * bytes / best_secs / 1e9 / probes().read_gbs;
}

constexpr double F32 = 4, BF16 = 2;  // bytes per element

// ---- the probe row: the limits every pct_peak is of, as measured before the first row ----

void BM_Limits(benchmark::State& st) {
  const ops::HostLimits& p = probes();
  for (auto _ : st) benchmark::DoNotOptimize(p.read_gbs);
  st.counters["read_GB/s"] = p.read_gbs;
  st.counters["copy_GB/s"] = p.copy_gbs;
  st.counters["fma_GFLOP/s"] = p.fma_gflops;
}

// Eigen's F32 GEMM, out = x·wᵀ: a reference row (what a generic BLAS-like library reaches here).
void BM_EigenSgemm(benchmark::State& st, int64_t M, int64_t N, int64_t K) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMajor x = RowMajor::Random(M, K), w = RowMajor::Random(N, K), o(M, N);
  Eigen::setNbThreads(omp_get_max_threads());
  o.noalias() = x * w.transpose();  // warm-up
  const double secs = timed_loop(st, [&] {
    o.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(o.data());
  });
  report(st, secs, 2.0 * M * N * K, (M * K + N * K + M * N) * F32, Limit::Fma);
}

// ---- linear ----

void BM_Linear(benchmark::State& st, const bn::LinearRow& r) {
  RowData& d = data();
  const bool gemv = r.M <= 16;  // ops/cpu/linear.cpp: M <= 16 streams float weights (GEMV, grouped above 4)
  const Tensor x = d.in("x", {r.M, r.K}, DType::F32, 1), out = d.out("out", {r.M, r.N});
  const Tensor w = r.N > 100000 ? vocab_matrix(r.N, r.K) : d.in("w", {r.N, r.K}, DType::BF16, 2, 0.05f);
  std::optional<Tensor> b;
  if (r.bias) b = d.in("b", {r.N}, DType::F32, 3);
  const std::vector<Tensor> ws = gemv ? d.rotated("w", w) : std::vector<Tensor>{w};
  ops::linear(out, x, w, b);  // warm-up (first touch of out, per-thread scratch)
  size_t i = 0;
  const auto call = [&] {
    ops::linear(out, x, ws[i++ % ws.size()], b);  // out = x·wᵀ + b
    benchmark::DoNotOptimize(out.raw_data());
  };
  double best = 0;
  const double secs = gemv ? timed_loop_best(st, call, &best) : timed_loop(st, call);
  const double bytes = r.N * r.K * BF16 + (r.M * r.K + r.M * r.N + (r.bias ? r.N : 0)) * F32;
  report(st, secs, r.flops(), bytes, gemv ? Limit::Read : Limit::Fma);
  if (gemv) report_best(st, best, bytes);
}

// ---- linear with quantised weights ----

// Codes and scales of a quantised weight, made directly (the kernels' speed does not depend on the
// values, and quantising the 233 M weights of an LM head would dominate the setup): codes from the
// xorshift stream, scales around 1e-3 (as for weights of RMS ~0.02).
ops::Weight random_quant_weight(const bn::QuantLinearRow& r, uint64_t seed) {
  ops::Weight w;
  w.type = r.type;
  w.group = r.group;
  w.data = Tensor::empty({r.N, r.K / ops::quant_codes_per_byte(r.type)},
                         r.type == ops::QuantType::Q8 ? DType::I8 : DType::U8);
  const auto bytes = [](const Tensor& t, uint64_t sd) {
    auto* p = static_cast<uint8_t*>(t.raw_data());
    const int64_t n = static_cast<int64_t>(t.nbytes()), head = std::min<int64_t>(n, int64_t{1} << 22);
    uint64_t st = sd * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < head; ++i) p[i] = static_cast<uint8_t>(xorshift(st) >> 56);
    for (int64_t lo = head; lo < n; lo += head) std::memcpy(p + lo, p, static_cast<size_t>(std::min(head, n - lo)));
  };
  bytes(w.data, seed);
  const auto scales = [&](uint64_t sd) {
    Tensor t = Tensor::empty({r.N, r.K / r.group}, DType::F16);
    uint64_t st = sd * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data<uint16_t>()[i] = f32_to_f16(1e-3f * (static_cast<float>(xorshift(st) >> 40) * 0x1p-24f + 0.5f));
    return t;
  };
  w.scale = scales(seed + 1);
  if (r.asym) w.zero = scales(seed + 2);
  return w;
}

void BM_QuantLinear(benchmark::State& st, const bn::QuantLinearRow& r) {
  RowData& d = data();
  const bool gemv = r.M <= 4;
  const Tensor x = d.in("x", {r.M, r.K}, DType::F32, 1), out = d.out("out", {r.M, r.N});
  const ops::Weight w = random_quant_weight(r, 2);
  const std::vector<ops::Weight> ws = gemv ? d.rotated_weights("w", w) : std::vector<ops::Weight>{w};
  ops::linear(out, x, w);  // warm-up
  size_t i = 0;
  const auto call = [&] {
    ops::linear(out, x, ws[i++ % ws.size()]);  // out = x·w'ᵀ
    benchmark::DoNotOptimize(out.raw_data());
  };
  double best = 0;
  const double secs = gemv ? timed_loop_best(st, call, &best) : timed_loop(st, call);
  const double bytes = static_cast<double>(w.nbytes()) + (r.M * r.K + r.M * r.N) * F32;
  report(st, secs, r.flops(), bytes, gemv ? Limit::Read : Limit::Fma);
  if (gemv) report_best(st, best, bytes);
}

// Several GEMVs of one decode shape called in turn, each from its own rotation set, so the noise of
// a shared machine hits them alike: for each, the median call as <name>_GB/s and <name>_pct (of
// read_bw), and <name>_speedup = the first one's median call / its own (= the ratio of decode
// tokens/s for this weight).
void compare_gemvs(benchmark::State& st, const bn::LinearRow& r,
                   const std::vector<std::pair<std::string, ops::Weight>>& variants) {
  RowData& d = data();
  const Tensor x = d.in("x", {1, r.K}, DType::F32, 1), out = d.out("out", {1, r.N});
  const size_t V = variants.size();
  std::vector<const std::vector<ops::Weight>*> sets;
  for (const auto& [name, w] : variants) sets.push_back(&d.rotated_weights(name, w));
  std::vector<std::vector<double>> t(V);
  for (size_t v = 0; v < V; ++v) ops::linear(out, x, sets[v]->front());  // warm-up
  size_t i = 0;
  for (auto _ : st) {
    for (size_t v = 0; v < V; ++v) {
      const auto c0 = Clock::now();
      ops::linear(out, x, (*sets[v])[i % sets[v]->size()]);  // out = x·wᵀ
      benchmark::DoNotOptimize(out.raw_data());
      t[v].push_back(seconds_since(c0));
    }
    ++i;
  }
  std::vector<double> med(V);
  for (size_t v = 0; v < V; ++v) {
    std::nth_element(t[v].begin(), t[v].begin() + static_cast<int64_t>(t[v].size() / 2), t[v].end());
    med[v] = t[v][t[v].size() / 2];
    const double bytes = static_cast<double>(variants[v].second.nbytes()) + (r.K + r.N) * F32;
    st.counters[variants[v].first + "_GB/s"] = bytes / med[v] / 1e9;
    st.counters[variants[v].first + "_pct"] = 100 * bytes / med[v] / 1e9 / probes().read_gbs;
    if (v > 0) st.counters[variants[v].first + "_speedup"] = med[0] / med[v];
  }
  st.SetLabel("median call of each; pct of read_bw");
}

// BF16, q8, q4 at a decode shape.
void BM_GemvCompare(benchmark::State& st, const bn::LinearRow& r) {
  RowData& d = data();
  const Tensor wb = r.N > 100000 ? vocab_matrix(r.N, r.K) : d.in("w", {r.N, r.K}, DType::BF16, 2, 0.05f);
  compare_gemvs(st, r,
                {{"bf16", wb},
                 {"q8", random_quant_weight({r.tag, 1, r.N, r.K, ops::QuantType::Q8, ops::kQ8Group, false}, 2)},
                 {"q4", random_quant_weight({r.tag, 1, r.N, r.K, ops::QuantType::Q4, ops::kQ4Group, false}, 3)}});
}

// The q4 format study's candidates (docs/QUANTIZATION.md): symmetric / asymmetric, G = 32, 64, 128.
void BM_Q4Study(benchmark::State& st, const bn::LinearRow& r) {
  std::vector<std::pair<std::string, ops::Weight>> v;
  uint64_t seed = 4;
  for (bool asym : {false, true})
    for (int64_t G : {32, 64, 128})
      v.push_back({(asym ? "asym_g" : "sym_g") + std::to_string(G),
                   random_quant_weight({r.tag, 1, r.N, r.K, ops::QuantType::Q4, G, asym}, seed++)});
  compare_gemvs(st, r, v);
}

// ---- attention ----

void BM_Attention(benchmark::State& st, const bn::AttentionRow& r) {
  RowData& d = data();
  const Tensor q = d.in("q", {r.T, r.H, r.Dh}, DType::F32, 4), out = d.out("out", {r.T, r.H, r.Dh});
  const Tensor k = d.in("k", {r.S, r.Hkv, r.Dh}, DType::F32, 5), v = d.in("v", {r.S, r.Hkv, r.Dh}, DType::F32, 6);
  const bool decode = r.T <= 4;  // the KV cache streams once per token: memory-bound
  const std::vector<Tensor> ks = decode ? d.rotated("k", k) : std::vector<Tensor>{k};
  const std::vector<Tensor> vs = decode ? d.rotated("v", v) : std::vector<Tensor>{v};
  ops::AttentionParams p;
  p.causal = r.causal;
  p.q_offset = r.S - r.T;
  ops::attention(out, q, k, v, p);  // warm-up
  size_t i = 0;
  const double secs = timed_loop(st, [&] {
    ops::attention(out, q, ks[i % ks.size()], vs[i % vs.size()], p);  // out = softmax(q·kᵀ/√Dh + mask)·v
    ++i;
    benchmark::DoNotOptimize(out.raw_data());
  });
  const double bytes = (2.0 * r.S * r.Hkv * r.Dh + 2.0 * r.T * r.H * r.Dh) * F32;
  report(st, secs, r.flops(), bytes, decode ? Limit::Read : Limit::Fma);
}

// ---- norms ----

void BM_RmsNorm(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor x = d.in("x", {r.T, r.D}, DType::F32, 7), w = d.in("w", {r.D}, DType::F32, 8);
  const Tensor out = d.out("out", {r.T, r.D});
  ops::rms_norm(out, x, w, 1e-6f);
  const double secs = timed_loop(st, [&] {
    ops::rms_norm(out, x, w, 1e-6f);  // n = RMSNorm(x)
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, (2.0 * r.T * r.D + r.D) * F32, Limit::Copy);
}

void BM_LayerNorm(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor x = d.in("x", {r.T, r.D}, DType::F32, 9), out = d.out("out", {r.T, r.D});
  const Tensor w = d.in("w", {r.D}, DType::F32, 10), b = d.in("b", {r.D}, DType::F32, 11);
  ops::layer_norm(out, x, w, b, 1e-6f);
  const double secs = timed_loop(st, [&] {
    ops::layer_norm(out, x, w, b, 1e-6f);  // n = LN(x)
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, (2.0 * r.T * r.D + 2.0 * r.D) * F32, Limit::Copy);
}

// ---- rope (in place on q, as the model calls it; a rotation keeps the values bounded) ----

void BM_Rope(benchmark::State& st, const bn::RopeRow& r) {
  RowData& d = data();
  const Tensor x = d.in("x", {r.T, r.H, r.Dh}, DType::F32, 12);
  const Tensor pos = d.get("pos", [&] {
    Tensor t = Tensor::empty({r.T}, DType::I64);
    const int64_t p0 = r.T == 1 ? 2048 : 0;  // decode: a token at position 2048
    for (int64_t i = 0; i < r.T; ++i) t.data<int64_t>()[i] = p0 + i;
    return t;
  });
  ops::rope(x, pos, 1e6);
  const double secs = timed_loop(st, [&] {
    ops::rope(x, pos, 1e6);  // q = RoPE(q), theta = 1e6 (Qwen2.5)
    benchmark::DoNotOptimize(x.raw_data());
  });
  report(st, secs, 0, 2.0 * r.T * r.H * r.Dh * F32 + r.T * 8.0, Limit::Copy);
}

// ---- elementwise ----
// gelu_erf and silu_mul run in place in the model; here out ≠ x, because applying them again and
// again to one buffer drives the negative half towards denormals. Same bytes either way.

void BM_GeluErf(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor x = d.in("x", {r.T, r.D}, DType::F32, 13, 3.0f), out = d.out("out", {r.T, r.D});
  ops::gelu_erf(out, x);
  const double secs = timed_loop(st, [&] {
    ops::gelu_erf(out, x);  // f = GELU(x)
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, 2.0 * r.T * r.D * F32, Limit::Copy);
}

void BM_SiluMul(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor g = d.in("g", {r.T, r.D}, DType::F32, 14, 3.0f), u = d.in("u", {r.T, r.D}, DType::F32, 15);
  const Tensor out = d.out("out", {r.T, r.D});
  ops::silu_mul(out, g, u);
  const double secs = timed_loop(st, [&] {
    ops::silu_mul(out, g, u);  // silu(g) ⊙ u
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, 3.0 * r.T * r.D * F32, Limit::Copy);
}

void BM_Add(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor x = d.in("x", {r.T, r.D}, DType::F32, 16), y = d.in("y", {r.T, r.D}, DType::F32, 17, 1e-3f);
  ops::add(x, x, y);
  const double secs = timed_loop(st, [&] {
    ops::add(x, x, y);  // x = x + y (in place, as the residual stream)
    benchmark::DoNotOptimize(x.raw_data());
  });
  report(st, secs, 0, 3.0 * r.T * r.D * F32, Limit::Copy);
}

void BM_AddScaled(benchmark::State& st, const bn::RowsRow& r) {
  RowData& d = data();
  const Tensor h = d.in("h", {r.T, r.D}, DType::F32, 18), y = d.in("y", {r.T, r.D}, DType::F32, 19, 1e-3f);
  const Tensor ls = d.in("ls", {r.D}, DType::F32, 20, 0.1f);
  ops::add_scaled(h, h, ls, y);
  const double secs = timed_loop(st, [&] {
    ops::add_scaled(h, h, ls, y);  // h = h + ls ⊙ y
    benchmark::DoNotOptimize(h.raw_data());
  });
  report(st, secs, 0, (3.0 * r.T * r.D + r.D) * F32, Limit::Copy);
}

// ---- gathers / copies ----

void BM_Embedding(benchmark::State& st, const bn::EmbeddingRow& r) {
  RowData& d = data();
  const Tensor table = vocab_matrix(r.V, r.D), out = d.out("out", {r.T, r.D});
  // Rotating sets of random ids, so the looked-up rows are not in cache.
  const int64_t n = rotation_copies(static_cast<size_t>(r.T * r.D * BF16));
  const Tensor all = d.get("ids", [&] { return random_ids(n * r.T, r.V, 22); });
  std::vector<Tensor> sets;
  for (int64_t i = 0; i < n; ++i) sets.push_back(all.narrow(0, i * r.T, r.T));
  ops::embedding(out, sets[0], table);
  size_t i = 0;
  const double secs = timed_loop(st, [&] {
    ops::embedding(out, sets[i++ % sets.size()], table);  // out = E[ids]
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, r.T * r.D * (BF16 + F32) + r.T * 8.0, Limit::Copy);
}

void BM_ScatterRows(benchmark::State& st, const bn::ScatterRow& r) {
  RowData& d = data();
  const Tensor dst = d.in("dst", {r.R, r.D}, DType::F32, 23), src = d.in("src", {r.K, r.D}, DType::F32, 24);
  const Tensor rows = d.get("rows", [&] {
    Tensor t = Tensor::empty({r.K}, DType::I64);  // the image span: rows 32 .. 32 + K - 1
    for (int64_t k = 0; k < r.K; ++k) t.data<int64_t>()[k] = 32 + k;
    return t;
  });
  ops::scatter_rows(dst, rows, src);
  const double secs = timed_loop(st, [&] {
    ops::scatter_rows(dst, rows, src);  // E[where[k]] = image_rows[k]
    benchmark::DoNotOptimize(dst.raw_data());
  });
  report(st, secs, 0, 2.0 * r.K * r.D * F32 + r.K * 8.0, Limit::Copy);
}

void BM_PixelShuffle(benchmark::State& st, const bn::ShuffleRow& r) {
  RowData& d = data();
  const Tensor in = d.in("in", {r.T, r.N, r.C}, DType::F32, 25), out = d.out("out", {r.T, r.N / 4, 4 * r.C});
  ops::pixel_shuffle_v2(out, in);
  const double secs = timed_loop(st, [&] {
    ops::pixel_shuffle_v2(out, in);  // s = shuffle_v2(features)
    benchmark::DoNotOptimize(out.raw_data());
  });
  report(st, secs, 0, 2.0 * r.T * r.N * r.C * F32, Limit::Copy);
}

// ---- patch embedding (im2col + GEMM) ----

void BM_PatchEmbed(benchmark::State& st, const bn::PatchRow& r) {
  RowData& d = data();
  const int64_t G = r.S / r.P;
  const Tensor px = d.in("px", {r.T, 3, r.S, r.S}, DType::F32, 26), out = d.out("out", {r.T, G * G, r.C});
  const Tensor w = d.in("w", {r.C, 3, r.P, r.P}, DType::BF16, 27, 0.05f), b = d.in("b", {r.C}, DType::F32, 28);
  ops::patch_embed(out, px, w, b);
  const double secs = timed_loop(st, [&] {
    ops::patch_embed(out, px, w, b);  // patches = Conv2d(px)
    benchmark::DoNotOptimize(out.raw_data());
  });
  const double bytes = (r.T * 3.0 * r.S * r.S + r.T * G * G * r.C + r.C) * F32 + r.C * 3.0 * r.P * r.P * BF16;
  report(st, secs, r.flops(), bytes, Limit::Fma);
}

// ---- sampling ----

void BM_Sample(benchmark::State& st, const bn::SampleRow& r) {
  const Tensor logits = data().in("logits", {r.V}, DType::F32, 29, 8.0f);
  const ops::SamplingParams p = bn::sampling_params(r);
  uint64_t step = 0;
  benchmark::DoNotOptimize(ops::sample(logits, p, step++));
  const double secs = timed_loop(st, [&] { benchmark::DoNotOptimize(ops::sample(logits, p, step++)); });
  report(st, secs, 0, r.V * F32, Limit::Read);
}

// ---- registration ----

int g_failures = 0;

// A row: an exception from the op (a failed precondition) marks the row as failed, the remaining rows
// still run, and the exit status is 1 (so the CI smoke run fails).
template <class Body>
benchmark::internal::Benchmark* row(const std::string& name, Body body, benchmark::TimeUnit unit) {
  return benchmark::RegisterBenchmark(name.c_str(),
                                      [name, body](benchmark::State& st) {
                                        try {
                                          data().start(name);
                                          body(st);
                                        } catch (const std::exception& e) {
                                          ++g_failures;
                                          st.SkipWithError(e.what());
                                        }
                                      })
      ->UseRealTime()
      ->Unit(unit);
}

struct Registrar {
  bool full = bn::full_mode();
  int registered = 0, skipped = 0, study_skipped = 0;

  template <class Row, class Fn>
  void add(const std::string& op, const Row& r, const std::string& dimstr, double flops, Fn fn,
           benchmark::TimeUnit unit = benchmark::kMicrosecond) {
    if (flops > bn::kSmokeFlops && !full) {
      ++skipped;
      return;
    }
    ++registered;
    row(
        op + "/" + r.tag + "/" + dimstr, [r, fn](benchmark::State& st) { fn(st, r); }, unit);
  }
};

void register_all(Registrar& R) {
  using bn::dims;
  const auto ms = benchmark::kMillisecond;
  // Probes first, then the reference GEMM.
  row("probe/limits", BM_Limits, ms);
  row(
      "ref/eigen_sgemm/M:1792/N:1536/K:1536", [](benchmark::State& st) { BM_EigenSgemm(st, 1792, 1536, 1536); }, ms);

  for (const auto& r : bn::linear_rows())
    R.add(r.M <= 16 ? "gemv" : "gemm", r, dims({{"M", r.M}, {"N", r.N}, {"K", r.K}}), r.flops(), BM_Linear, ms);
  for (const auto& r : bn::quant_linear_rows()) {
    const std::string op = std::string(r.M <= 4 ? "gemv_" : "gemm_") + ops::quant_type_name(r.type);
    R.add(op, r, dims({{"M", r.M}, {"N", r.N}, {"K", r.K}}), r.flops(), BM_QuantLinear, ms);
  }
  // The comparisons: every M = 1 shape (BF16 / q8 / q4), the 1.5B's gate/up and down (q4 study).
  for (const auto& r : bn::linear_rows()) {
    if (r.M != 1) continue;
    const bool study = r.tag == "1.5b/decode/gate_up" || r.tag == "1.5b/decode/down";
    if (!R.full) {
      R.skipped += study ? 2 : 1;
      R.study_skipped += study ? 2 : 1;
      continue;
    }
    R.add("gemv_cmp", r, dims({{"M", r.M}, {"N", r.N}, {"K", r.K}}), 0, BM_GemvCompare, ms);
    if (study) R.add("gemv_q4study", r, dims({{"M", r.M}, {"N", r.N}, {"K", r.K}}), 0, BM_Q4Study, ms);
  }
  for (const auto& r : bn::attention_rows())
    R.add("attn", r, dims({{"T", r.T}, {"S", r.S}, {"H", r.H}, {"Hkv", r.Hkv}, {"Dh", r.Dh}}), r.flops(), BM_Attention,
          r.T <= 4 ? benchmark::kMicrosecond : ms);
  for (const auto& r : bn::rms_norm_rows()) R.add("rms_norm", r, dims({{"T", r.T}, {"D", r.D}}), 0, BM_RmsNorm);
  for (const auto& r : bn::layer_norm_rows()) R.add("layer_norm", r, dims({{"T", r.T}, {"D", r.D}}), 0, BM_LayerNorm);
  for (const auto& r : bn::rope_rows()) R.add("rope", r, dims({{"T", r.T}, {"H", r.H}, {"Dh", r.Dh}}), 0, BM_Rope);
  for (const auto& r : bn::gelu_rows()) R.add("gelu_erf", r, dims({{"T", r.T}, {"D", r.D}}), 0, BM_GeluErf);
  for (const auto& r : bn::silu_mul_rows()) R.add("silu_mul", r, dims({{"T", r.T}, {"F", r.D}}), 0, BM_SiluMul);
  for (const auto& r : bn::add_rows()) R.add("add", r, dims({{"T", r.T}, {"D", r.D}}), 0, BM_Add);
  for (const auto& r : bn::add_scaled_rows()) R.add("add_scaled", r, dims({{"T", r.T}, {"D", r.D}}), 0, BM_AddScaled);
  for (const auto& r : bn::embedding_rows())
    R.add("embedding", r, dims({{"T", r.T}, {"V", r.V}, {"D", r.D}}), 0, BM_Embedding);
  for (const auto& r : bn::scatter_rows_rows())
    R.add("scatter_rows", r, dims({{"K", r.K}, {"R", r.R}, {"D", r.D}}), 0, BM_ScatterRows);
  for (const auto& r : bn::pixel_shuffle_rows())
    R.add("pixel_shuffle_v2", r, dims({{"T", r.T}, {"N", r.N}, {"C", r.C}}), 0, BM_PixelShuffle);
  for (const auto& r : bn::patch_embed_rows())
    R.add("patch_embed", r, dims({{"T", r.T}, {"S", r.S}, {"P", r.P}, {"C", r.C}}), r.flops(), BM_PatchEmbed, ms);
  for (const auto& r : bn::sample_rows()) R.add("sample", r, dims({{"V", r.V}}), 0, BM_Sample);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // SAILVL_QUANT_ISA=scalar|avx2|avx512 runs the quantised GEMV on that instruction set (default:
  // the best this CPU has), to compare the AVX2 baseline with the AVX-512 kernels on one machine.
  if (const char* isa = std::getenv("SAILVL_QUANT_ISA")) {
    for (auto i : {ops::cpu::QuantIsa::Scalar, ops::cpu::QuantIsa::Avx2, ops::cpu::QuantIsa::Avx512})
      if (std::string(isa) == ops::cpu::quant_isa_name(i)) ops::cpu::set_quant_isa(i);
  }
  Registrar R;
  register_all(R);
  const ops::HostLimits& p = probes();
  std::printf(
      "bench_ops_cpu: %d threads; limits: read %.1f GB/s, copy %.1f GB/s (read + written), FMA peak %.1f GFLOP/s\n",
      omp_get_max_threads(), p.read_gbs, p.copy_gbs, p.fma_gflops);
  std::printf("bench_ops_cpu: quantised GEMV on %s\n", ops::cpu::quant_isa_name(ops::cpu::quant_isa()));
  std::printf("bench_ops_cpu: %s mode, %d op rows", R.full ? "full" : "smoke/default", R.registered);
  if (R.skipped)
    std::printf(
        " (%d rows over %.0f GFLOP per call and %d gemv_cmp / gemv_q4study rows left out: SAILVL_BENCH_FULL=1 adds "
        "them)",
        R.skipped - R.study_skipped, bn::kSmokeFlops / 1e9, R.study_skipped);
  std::printf("\n");
  std::fflush(stdout);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_failures) std::fprintf(stderr, "bench_ops_cpu: %d rows failed\n", g_failures);
  return g_failures ? 1 : 0;
}
