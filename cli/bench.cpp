// `sailvl bench`: end-to-end timing of one synthetic request, reported against the hardware limit.
//
//   TTFT = preprocess + vision + projector + prefill;  decode tok/s (median, p10-p90 spread);
//   bytes/token = every LLM weight read once per decoded token (decoder layers + final norm +
//   LM head; one embedding row) + the KV cache read at the mean context;
//   % of limit = (bytes/token × tok/s) / measured copy bandwidth of this device (decode), and
//   achieved FLOP/s / measured FMA peak (vision and prefill, CPU; FLOPs counted from the config:
//   2 per multiply-add of every linear, plus attention's two products).
//
// The request is synthetic so every checkpoint (real or `make-model` random) can be measured the
// same way: N image tiles of random pixels (the tiling itself is timed separately from a real
// decode of a synthetic 2000x1500 image when --image-tiles > 0), a prompt padded with a neutral
// text token to --prompt-tokens, and --gen greedy tokens (generation continues through
// <|im_end|> only if the model never emits it: random weights practically never do).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "cli/session.h"
#include "ops/ops.h"
#include "runtime/chat_template.h"
#include "tensor/cuda_runtime.h"

namespace sailvl::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

void setup(Args& a) {
  a.usage_line = "sailvl bench -m DIR [--image-tiles N] [--prompt-tokens N] [--gen N] [--json]";
  a.description = "End-to-end benchmark of one synthetic request: TTFT split, decode tok/s, % of bandwidth.";
  add_model_flags(a);
  a.option("--image-tiles", "N", "448x448 tiles of random pixels in the prompt", "7");
  a.option("--prompt-tokens", "N", "total prompt length (text padded to reach it; >= image tokens + template)", "0");
  a.option("--gen", "N", "tokens to decode", "64");
  a.option("--repeat", "N", "repeat the whole request N times and report the best TTFT / median decode", "1");
  a.flag("--json", "print one JSON object");
}

// Host copy bandwidth (bytes read + written per second) on a buffer far larger than the caches.
double host_copy_bandwidth() {
  const size_t n = size_t{64} << 20;  // 4x a 32 MiB L3: DRAM-bound, and small next to the model
  std::vector<char> a(n, 1), b(n, 0);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t = Clock::now();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < 64; ++c) std::memcpy(b.data() + c * (n / 64), a.data() + c * (n / 64), n / 64);
    const double s = ms_since(t) / 1000;
    best = std::max(best, 2.0 * static_cast<double>(n) / s);
  }
  return best;
}

// Host F32 FMA peak (FLOP/s) over all OpenMP threads: independent register-only FMA chains,
// enough of them (12) to cover the FMA latency on both pipes of an AVX2 core. ~0.1 s.
double host_fma_peak() {
#if defined(__AVX2__) && defined(__FMA__)
  constexpr int64_t kIters = 4'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t = Clock::now();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      __m256 a[12];
      for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
      const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
      for (int64_t it = 0; it < kIters; ++it)
        for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
      float lanes[8];
      for (int i = 1; i < 12; ++i) a[0] = _mm256_add_ps(a[0], a[i]);
      _mm256_storeu_ps(lanes, a[0]);
      sink += lanes[0];
    }
    const double sec = ms_since(t) / 1000;
    const double flops = static_cast<double>(ops::num_threads()) * kIters * 12 * 16;
    best = std::max(best, flops / sec);
    if (sink == 12345.0f) std::printf(" ");  // keep the chains alive
  }
  return best;
#else
  return 0;
#endif
}

// FLOPs of one vision forward over `tiles` tiles (the blocks that run) and of the LLM prefill over
// `tokens` tokens (causal attention: half the score matrix). 2 FLOPs per multiply-add.
double vision_flops(const loader::ModelConfig& c, int64_t tiles) {
  const auto& v = c.vision;
  const double T = static_cast<double>((c.force_image_size / v.patch_size) * (c.force_image_size / v.patch_size) +
                                       (v.model_type == "aimv2" ? 0 : 1));  // + CLS for InternViT
  const double D = static_cast<double>(v.hidden), I = static_cast<double>(v.intermediate);
  const double mlp = v.model_type == "aimv2" ? 3 * D * I : 2 * D * I;  // SwiGLU vs fc1/fc2
  const int64_t blocks = c.select_layer == -1 ? v.layers
                         : c.select_layer < 0 ? v.layers + c.select_layer + 1
                                              : c.select_layer + 1;
  const double patch = 2 * T * static_cast<double>(v.num_channels * v.patch_size * v.patch_size) * D;
  const double per_layer = 2 * T * (4 * D * D + mlp) + 4 * T * T * D;  // qkv + o, MLP, QKᵀ and PV
  const double Dl = static_cast<double>(c.llm.hidden);
  const double proj = 2 * static_cast<double>(c.num_image_token) * (4 * D * Dl + Dl * Dl);  // mlp1: 4C→D→D
  return static_cast<double>(tiles) * (patch + static_cast<double>(blocks) * per_layer + proj);
}
double prefill_flops(const loader::LlmConfig& L, int64_t tokens) {
  const double S = static_cast<double>(tokens), D = static_cast<double>(L.hidden);
  const double q = static_cast<double>(L.heads * L.head_dim), kv = static_cast<double>(L.kv_heads * L.head_dim);
  const double per_layer = 2 * S * (D * q + 2 * D * kv + q * D + 3 * D * static_cast<double>(L.intermediate)) +
                           2 * S * S * q;  // QKᵀ and PV over the causal half: 2 × (2·S²/2·H·Dh)
  return static_cast<double>(L.layers) * per_layer + 2 * D * static_cast<double>(L.vocab);  // + LM head, 1 row
}

int64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

int run(Args& a) {
  install_interrupt_handler();
  apply_threads(a);
  const Device device = pick_device(a);
  const std::string dir = resolve_model_dir(a.get("model"));
  const int64_t tiles = a.get_int("image-tiles", 0, 64);
  const int64_t gen = a.get_int("gen", 1, 1 << 20);
  const int64_t repeat = a.get_int("repeat", 1, 1000);

  auto t_load = Clock::now();
  const model::SailVL m = model::SailVL::load(dir, device);
  const double load_ms = ms_since(t_load);
  const auto& c = m.config();

  // Preprocessing cost of a realistic photo-sized input, for the TTFT split.
  double preprocess_ms = 0;
  if (tiles > 0) {
    image::RgbImage img;
    img.width = 2000;
    img.height = 1500;
    img.pixels.resize(static_cast<size_t>(img.width * img.height * 3));
    std::mt19937 rng(1);
    for (auto& p : img.pixels) p = static_cast<uint8_t>(rng() & 0xff);
    image::PreprocessOptions po;
    po.max_tiles = std::max<int64_t>(1, tiles - 1);
    const auto t = Clock::now();
    (void)image::preprocess_decoded({img}, po);
    preprocess_ms = ms_since(t);
  }

  // Synthetic pixels [tiles, 3, 448, 448] in the normalised range.
  Tensor pixels;
  if (tiles > 0) {
    const int64_t S = c.force_image_size;
    std::vector<float> v(static_cast<size_t>(tiles * 3 * S * S));
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    for (auto& x : v) x = u(rng);
    pixels = Tensor::from_floats(v, {tiles, 3, S, S});
    // As HF's benchmark (and the model card) does: pixels in the model's activation dtype on the
    // model's device before the clock starts; the copy is added to the preprocess share of TTFT.
    if (device.is_cuda()) {
      const auto t = Clock::now();
      pixels = pixels.to(DType::BF16).to(device);
      cuda::synchronize();
      preprocess_ms += ms_since(t);
    }
  }
  runtime::ChatRequest req;
  req.question = "Please describe the image in detail.";
  if (tiles > 0) req.tiles = {tiles};
  req.num_image_token = m.image_tokens_per_tile();
  runtime::ChatPrompt prompt = runtime::build_chat_prompt(m.tokenizer(), req);
  std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  const int64_t want = a.get_int("prompt-tokens", 0, 1 << 24);
  if (want > static_cast<int64_t>(ids.size())) {
    // Pad with " the" (a single ordinary token) before the closing template tokens.
    const auto pad = m.tokenizer().encode(" the");
    SAILVL_CHECK(!pad.empty(), Internal, "bench: cannot encode the padding token");
    ids.insert(ids.end() - 5, static_cast<size_t>(want - static_cast<int64_t>(ids.size())), pad.front());
  }

  runtime::GenerationOptions g;
  g.max_new_tokens = gen;
  g.cancel = &interrupted();
  std::vector<double> ttft, vision, projector, prefill, tok_ms;
  runtime::GenerationResult last;
  for (int64_t r = 0; r < repeat; ++r) {
    last = runtime::generate(m, ids, pixels, g);
    const auto& t = last.timings;
    vision.push_back(t.vision_ms);
    projector.push_back(t.projector_ms);
    prefill.push_back(t.prefill_ms);
    ttft.push_back(t.vision_ms + t.projector_ms + t.prefill_ms);
    // Skip the first decode step (warm-up) when there are enough.
    for (size_t i = t.token_ms.size() > 4 ? 1 : 0; i < t.token_ms.size(); ++i) tok_ms.push_back(t.token_ms[i]);
  }

  // Bytes read per decoded token (BF16 weights as stored).
  const auto& L = c.llm;
  const int64_t per_layer = L.hidden * (L.heads * L.head_dim) * 2 + L.hidden * (L.kv_heads * L.head_dim) * 2 +
                            L.heads * L.head_dim + 2 * L.kv_heads * L.head_dim + 3 * L.hidden * L.intermediate +
                            2 * L.hidden;
  const int64_t weight_elems = L.layers * per_layer + L.hidden + L.vocab * L.hidden + L.hidden;
  const double mean_ctx = static_cast<double>(ids.size()) + static_cast<double>(last.tokens.size()) / 2;
  const double kv_bytes_per_elem = device.is_cpu() ? 4.0 : 2.0;  // F32 cache on CPU, BF16 on CUDA
  const double kv_bytes =
      static_cast<double>(L.layers) * 2 * mean_ctx * static_cast<double>(L.kv_heads * L.head_dim) * kv_bytes_per_elem;
  const double bytes_per_token = static_cast<double>(weight_elems) * 2 + kv_bytes;
  const double med_ms = percentile(tok_ms, 0.5);
  const double tok_s = med_ms > 0 ? 1000.0 / med_ms : 0;
  const int64_t peak_host = peak_rss_bytes();                     // before the bandwidth probe's two buffers
  const double bw = device.is_cpu() ? host_copy_bandwidth() : 0;  // CUDA: see bench_ops_cuda's probe
  const double peak = device.is_cpu() ? host_fma_peak() : 0;
  const double best_vision_ms = vision.empty() ? 0
                                               : *std::min_element(vision.begin(), vision.end()) +
                                                     *std::min_element(projector.begin(), projector.end());
  const double best_prefill_ms = *std::min_element(prefill.begin(), prefill.end());
  const double vflops = tiles > 0 ? vision_flops(c, tiles) : 0;
  const double pflops = prefill_flops(L, static_cast<int64_t>(ids.size()));
  const double v_rate = best_vision_ms > 0 ? vflops / (best_vision_ms / 1e3) : 0;
  const double p_rate = best_prefill_ms > 0 ? pflops / (best_prefill_ms / 1e3) : 0;
  const double achieved = bytes_per_token * tok_s;

  const double best_ttft = *std::min_element(ttft.begin(), ttft.end());
  nlohmann::json j = {
      {"model", c.describe()},
      {"device", device.str()},
      {"threads", ops::num_threads()},
      {"load_ms", load_ms},
      {"image_tiles", tiles},
      {"prompt_tokens", ids.size()},
      {"generated", last.tokens.size()},
      {"ttft_ms",
       {{"total", preprocess_ms + best_ttft},
        {"preprocess", preprocess_ms},
        {"vision", *std::min_element(vision.begin(), vision.end())},
        {"projector", *std::min_element(projector.begin(), projector.end())},
        {"prefill", *std::min_element(prefill.begin(), prefill.end())}}},
      {"compute",
       {{"fma_peak_GFLOPs", peak / 1e9},
        {"vision_projector_GFLOP", vflops / 1e9},
        {"vision_projector_GFLOPs", v_rate / 1e9},
        {"vision_percent_of_peak", peak > 0 ? 100.0 * v_rate / peak : 0.0},
        {"prefill_GFLOP", pflops / 1e9},
        {"prefill_GFLOPs", p_rate / 1e9},
        {"prefill_percent_of_peak", peak > 0 ? 100.0 * p_rate / peak : 0.0}}},
      {"decode",
       {{"tokens_per_s_median", tok_s},
        {"ms_per_token_p10", percentile(tok_ms, 0.1)},
        {"ms_per_token_median", med_ms},
        {"ms_per_token_p90", percentile(tok_ms, 0.9)},
        {"bytes_per_token", bytes_per_token},
        {"achieved_GBps", achieved / 1e9},
        {"copy_bandwidth_GBps", bw / 1e9},
        {"percent_of_bandwidth", bw > 0 ? 100.0 * achieved / bw : 0.0}}},
      {"peak_host_bytes", peak_host},
      {"peak_device_bytes", cuda::mem_stats().peak},
  };
  if (a.on("json")) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("model        %s on %s, %d threads (load %.0f ms)\n", c.describe().c_str(), device.str().c_str(),
              ops::num_threads(), load_ms);
  std::printf("prompt       %zu tokens, %lld image tiles\n", ids.size(), static_cast<long long>(tiles));
  std::printf("TTFT         %.1f ms = preprocess %.1f + vision %.1f + projector %.1f + prefill %.1f\n",
              preprocess_ms + best_ttft, preprocess_ms, j["ttft_ms"]["vision"].get<double>(),
              j["ttft_ms"]["projector"].get<double>(), j["ttft_ms"]["prefill"].get<double>());
  if (peak > 0)
    std::printf(
        "compute      vision+projector %.0f GFLOP/s (%.0f%%), prefill %.0f GFLOP/s (%.0f%%) of the measured "
        "%.0f GFLOP/s FMA peak\n",
        v_rate / 1e9, 100.0 * v_rate / peak, p_rate / 1e9, 100.0 * p_rate / peak, peak / 1e9);
  std::printf("decode       %.2f tok/s median (%.1f / %.1f / %.1f ms per token p10/p50/p90) over %zu tokens\n", tok_s,
              percentile(tok_ms, 0.1), med_ms, percentile(tok_ms, 0.9), tok_ms.size());
  std::printf("bandwidth    %.2f GB/token -> %.1f GB/s", bytes_per_token / 1e9, achieved / 1e9);
  if (bw > 0) std::printf(" = %.0f%% of the measured %.1f GB/s copy bandwidth", 100.0 * achieved / bw, bw / 1e9);
  std::printf("\nmemory       peak host %.2f GB, peak device %.2f GB\n", static_cast<double>(peak_host) / 1e9,
              static_cast<double>(cuda::mem_stats().peak) / 1e9);
  return 0;
}

}  // namespace

SAILVL_COMMAND(bench, "end-to-end benchmark: TTFT split, decode tok/s, % of the bandwidth limit", setup, run);

}  // namespace sailvl::cli
