// `sailvl bench`: end-to-end timing of one synthetic request, reported against the hardware limit.
//
//   TTFT = preprocess + vision + projector + prefill;  decode tok/s (median, p10-p90 spread);
//   bytes/token = every LLM weight read once per decoded token (decoder layers + final norm +
//   LM head; one embedding row) + the KV cache read at the mean context;
//   % of limit = (bytes/token × tok/s) / measured copy bandwidth of this device (decode), and
//   achieved FLOP/s / measured FMA peak (vision and prefill, CPU). FLOPs and bytes come from the
//   cost model (model/cost.h), the limits from the probes (ops/probes.h).
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
#include <sstream>

#include "cli/common.h"
#include "model/cost.h"
#include "ops/ops.h"
#include "ops/probes.h"
#include "runtime/chat_template.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "tensor/cuda_runtime.h"
#include "tensor/observe.h"
#include "tensor/stage.h"

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
  a.option("--serve", "N,N,...",
           "instead: the serving benchmark, N concurrent text requests through the continuous-batching scheduler "
           "for each N (aggregate decode tok/s, TTFT p50/p99)");
  a.flag("--json", "print one JSON object");
  add_observe_flags(a);
  a.examples = {"sailvl bench -m models/sailvl-1d5-2b                       # 7 tiles, 64 tokens",
                "sailvl bench -m DIR --image-tiles 0 --prompt-tokens 1024 --gen 128 --json",
                "sailvl bench -m DIR --device cuda --repeat 5",
                "sailvl bench -m DIR --gen 16 --profile          # + time per stage and op, % of limit"};
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

// --serve: for each concurrency N, N distinct text requests (a --prompt-tokens prompt, --gen greedy
// tokens each) submitted at once to a scheduler with N slots. Reported per N:
//   decode tok/s  rows produced by batched decode steps / time spent in those steps: what batching buys,
//                 with the N prefills (which interleave with decoding) taken out;
//   x one         that figure over the first level's;
//   e2e tok/s     all generated tokens / wall time from submission to the last token (prefills included);
//   TTFT p50/p99  from submission, so queueing and the others' prefills count;
//   batch         mean rows per decode step.
int serve_bench(Args& a, const model::SailVL& m, const std::vector<int64_t>& levels, int64_t gen, int64_t prompt) {
  nlohmann::json rows = nlohmann::json::array();
  double base = 0;
  if (!a.on("json"))
    std::printf("%-8s %13s %7s %10s %9s %9s %7s\n", "streams", "decode tok/s", "x one", "e2e tok/s", "TTFT p50",
                "TTFT p99", "batch");
  for (int64_t n : levels) {
    runtime::SchedulerOptions so;
    so.slots = n;
    so.context = std::max<int64_t>(prompt + gen + 64, 512);
    runtime::Scheduler sched(m, so);
    std::vector<std::shared_ptr<runtime::Stream>> streams;
    for (int64_t i = 0; i < n; ++i) {
      runtime::ChatRequest req;
      req.question = str_cat("Request ", i, ": please describe a busy street market in the morning.");
      std::vector<runtime::ImageInput> none;
      runtime::PreparedPrompt p = runtime::prepare_prompt(m, req, none, {});
      if (prompt > static_cast<int64_t>(p.ids.size())) {  // pad with " the" before the closing template tokens
        const auto pad = m.tokenizer().encode(" the");
        p.ids.insert(p.ids.end() - 5, static_cast<size_t>(prompt - static_cast<int64_t>(p.ids.size())), pad.front());
      }
      runtime::Job j;
      j.ids = p.ids;
      j.gen.max_new_tokens = gen;
      j.gen.stop.clear();
      streams.push_back(sched.submit(std::move(j)));
    }
    const auto t0 = Clock::now();
    std::vector<double> ttft;
    int64_t tokens = 0;
    for (auto& s : streams) {
      std::string t;
      while (s->wait_text(t)) {
      }
      SAILVL_CHECK(!s->error(), Internal, "bench --serve: a request failed: ", s->error()->what());
      ttft.push_back(s->ttft_seconds());
      tokens += static_cast<int64_t>(s->result().tokens.size());
    }
    const double total_s = ms_since(t0) / 1000;
    const runtime::SchedulerStats st = sched.stats();
    const double agg = st.decode_seconds > 0 ? static_cast<double>(st.batched_rows) / st.decode_seconds : 0;
    const double e2e = static_cast<double>(tokens) / std::max(total_s, 1e-9);
    if (n == levels.front()) base = agg;
    const double batch =
        st.decode_steps ? static_cast<double>(st.batched_rows) / static_cast<double>(st.decode_steps) : 0;
    const double p50 = percentile(ttft, 0.5), p99 = percentile(ttft, 0.99);
    rows.push_back({{"streams", n},
                    {"decode_tokens_per_s", agg},
                    {"speedup_vs_first", base > 0 ? agg / base : 0},
                    {"end_to_end_tokens_per_s", e2e},
                    {"ttft_p50_s", p50},
                    {"ttft_p99_s", p99},
                    {"mean_decode_batch", batch},
                    {"generated_tokens", tokens},
                    {"wall_s", total_s}});
    if (!a.on("json"))
      std::printf("%-8lld %13.2f %6.2fx %10.2f %8.2fs %8.2fs %7.2f\n", static_cast<long long>(n), agg,
                  base > 0 ? agg / base : 0, e2e, p50, p99, batch);
    std::fflush(stdout);
  }
  if (a.on("json"))
    std::cout << nlohmann::json{{"model", m.config().describe()},
                                {"device", m.device().str()},
                                {"threads", ops::num_threads()},
                                {"prompt_tokens", prompt},
                                {"gen", gen},
                                {"serve", rows}}
                     .dump(2)
              << "\n";
  return 0;
}

int run(Args& a) {
  install_interrupt_handler();
  apply_threads(a);
  Observation observe(a);  // --profile / --trace, checked now
  const std::string dir = resolve_model_dir(a.get("model"));
  const Device device = pick_device(a, dir);
  if (a.has("serve")) {
    SAILVL_CHECK(!a.on("profile") && !a.on("trace"), Usage,
                 "--profile and --trace watch one request on this thread; --serve runs requests on the scheduler's");
    std::vector<int64_t> levels;
    std::stringstream ss(a.get("serve"));
    for (std::string tok; std::getline(ss, tok, ',');) {
      char* end = nullptr;
      const long long v = std::strtoll(tok.c_str(), &end, 10);
      SAILVL_CHECK(end && *end == 0 && v >= 1 && v <= 1024, Usage,
                   "--serve takes concurrency levels like 1,2,4,8, got '", escape_for_print(tok), "'");
      levels.push_back(v);
    }
    const model::SailVL m = model::SailVL::load(dir, device);
    return serve_bench(a, m, levels, a.get_int("gen", 1, 1 << 20), a.get_int("prompt-tokens", 0, 1 << 20));
  }
  const int64_t tiles = a.get_int("image-tiles", 0, 64);
  const int64_t gen = a.get_int("gen", 1, 1 << 20);
  const int64_t repeat = a.get_int("repeat", 1, 1000);

  auto t_load = Clock::now();
  const model::SailVL m = model::SailVL::load(dir, device);
  const double load_ms = ms_since(t_load);
  const auto& c = m.config();

  // Preprocessing cost of a realistic photo-sized input, for the TTFT split.
  observe.begin(device);  // --profile covers the preprocessing and every repetition
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
    StageScope stage("preprocess");
    HostStep step("resize+normalize");
    const auto t = Clock::now();
    const image::PixelBatch px = image::preprocess_decoded({img}, po);
    preprocess_ms = ms_since(t);
    step.out = &px.pixels;
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
      StageScope stage("preprocess");
      HostStep step("upload");
      step.bytes = static_cast<double>(pixels.numel()) * 2;  // BF16
      const auto t = Clock::now();
      pixels = pixels.to(DType::BF16).to(device);
      cuda::synchronize();
      preprocess_ms += ms_since(t);
      step.out = &pixels;
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
  observe.stop();

  // Bytes read per decoded token (model/cost.h): the weights as stored, + the KV cache at the mean context.
  const double mean_ctx = static_cast<double>(ids.size()) + static_cast<double>(last.tokens.size()) / 2;
  const DType act = model::activation_dtype(device);
  const double kv_bytes = mean_ctx * static_cast<double>(model::kv_bytes_per_token(c, act));
  const double bytes_per_token = static_cast<double>(model::decode_weight_bytes(c, &m.weights())) + kv_bytes;
  const double med_ms = percentile(tok_ms, 0.5);
  const double tok_s = med_ms > 0 ? 1000.0 / med_ms : 0;
  const int64_t peak_host = peak_rss_bytes();  // before the bandwidth probe's two buffers
  // The limits of this machine (ops/probes.h); CUDA: see bench_ops_cuda's probes.
  const ops::HostLimits lim = device.is_cpu() ? ops::measure_host_limits() : ops::HostLimits{};
  const double bw = lim.copy_gbs * 1e9, peak = lim.fma_gflops * 1e9;
  const double best_vision_ms = vision.empty() ? 0
                                               : *std::min_element(vision.begin(), vision.end()) +
                                                     *std::min_element(projector.begin(), projector.end());
  const double best_prefill_ms = *std::min_element(prefill.begin(), prefill.end());
  const double vflops =
      static_cast<double>(tiles) * (model::vision_flops_per_tile(c) + model::projector_flops_per_tile(c));
  const double pflops = model::prefill_flops(c, static_cast<int64_t>(ids.size()));
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
  const nlohmann::ordered_json profile = observe.end();  // --profile: the table on stderr
  if (!profile.is_null()) j["profile"] = nlohmann::json::parse(profile.dump());
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
