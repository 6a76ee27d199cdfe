#include "cli/common.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "ops/ops.h"
#include "runtime/memory_plan.h"
#include "tensor/cuda_runtime.h"
#include "tensor/error.h"

namespace sailvl::cli {

namespace fs = std::filesystem;

std::string resolve_model_dir(const std::string& arg) {
  SAILVL_CHECK(!arg.empty(), Usage, "-m needs a model directory");
  std::error_code ec;
  if (fs::is_directory(arg, ec)) return arg;
  if (fs::is_regular_file(arg, ec)) (void)model::load_config(arg);  // says "a file" (or "GGUF") and throws
  std::vector<std::string> tried{arg};
  const auto slash = arg.find('/');
  const bool repo_id = slash != std::string::npos && slash > 0 && arg.find('/', slash + 1) == std::string::npos &&
                       arg[0] != '.' && arg.find("..") == std::string::npos;
  if (repo_id) {
    std::vector<fs::path> caches;
    if (const char* c = std::getenv("HF_HUB_CACHE")) caches.emplace_back(c);
    if (const char* h = std::getenv("HF_HOME")) caches.push_back(fs::path(h) / "hub");
    if (const char* home = std::getenv("HOME")) caches.push_back(fs::path(home) / ".cache" / "huggingface" / "hub");
    const std::string entry = "models--" + arg.substr(0, slash) + "--" + arg.substr(slash + 1);
    for (const auto& cache : caches) {
      const fs::path snaps = cache / entry / "snapshots";
      tried.push_back(snaps.string());
      if (!fs::is_directory(snaps, ec)) continue;
      std::ifstream ref(cache / entry / "refs" / "main");
      std::string rev;
      if (ref && std::getline(ref, rev) && fs::is_directory(snaps / rev, ec)) return (snaps / rev).string();
      // No refs/main: the most recently modified snapshot.
      fs::path best;
      fs::file_time_type best_t{};
      for (const auto& e : fs::directory_iterator(snaps, ec)) {
        if (!e.is_directory()) continue;
        auto t = e.last_write_time(ec);
        if (best.empty() || t > best_t) best = e.path(), best_t = t;
      }
      if (!best.empty()) return best.string();
    }
  }
  std::string where;
  for (const auto& t : tried) where += "\n  " + t;
  fail(ErrorKind::BadModel, "model directory '", escape_for_print(arg), "' not found; looked in:", where,
       "\n(download one, e.g. huggingface-cli download BytedanceDouyinContent/SAIL-VL-1d5-2B --local-dir DIR)");
}

void add_model_flags(Args& a) {
  a.option("-m,--model", "DIR", "checkpoint directory, or ORG/NAME in the local Hugging Face cache");
  a.option("--device", "DEV", "cpu, cuda or auto (cuda when a GPU answers)", "auto");
  a.option("-t,--threads", "N", "CPU threads (0 = all cores)", "0");
  a.flag("-v,--verbose", "more detail on stderr");
  a.flag("-q,--quiet", "no progress or summary on stderr");
}

void add_generation_flags(Args& a) {
  a.option("-n,--max-new-tokens", "N",
           "at most N new tokens (a cap: the answer also ends at a full context; 0 = prefill only)", "1024");
  a.option("--temp", "T", "sampling temperature; 0 = greedy", "0");
  a.option("--top-k", "K", "keep the K most likely tokens when sampling (0 = off)", "50");
  a.option("--top-p", "P", "nucleus sampling mass (1 = off)", "1.0");
  a.option("--repeat-penalty", "R", "repetition penalty, HF semantics (1 = off)", "1.0");
  a.option("--seed", "S", "sampling seed (the draw at step i depends on seed and i only)", "0");
  a.option("-c,--ctx-size", "N", "tokens a conversation may hold (0 = the model's max_position_embeddings)", "0");
}

void add_observe_flags(Args& a) {
  a.flag("--profile",
         "after the answer, a table on stderr (and in --json under \"profile\"): time per stage and per op, "
         "bytes, FLOPs, rates and % of this machine's limits");
  a.flag("--trace", "print the forward pass on stderr as it runs: one line per op with shapes and values");
  a.option("--trace-layers", "L,L,...", "with --trace: only these layers of each stack (e.g. 0,1,-1; -1 = the last)");
}

void add_image_flags(Args& a) {
  a.multi("-i,--image", "IMG", "image file (PNG, JPEG, WebP)");
  a.option("--max-tiles", "N", "most 448x448 tiles per image (the card's max_num)", "10");
  a.flag("--frames", "treat the -i files as video frames: one tile each, 'Frame-k: <image>' prompt");
}

Device pick_device(const Args& a, const std::string& model_dir) {
  const std::string d = a.get("device");
  if (d == "cpu") return Device::cpu();
  // Quantised weights have CPU kernels only (docs/QUANTIZATION.md): say so before anything loads.
  const model::ModelConfig cfg = model::load_config(model_dir);
  if (cfg.quantized()) {
    const char* q = ops::quant_type_name(cfg.llm.quant);
    SAILVL_CHECK(d != "cuda", BadModel, model_dir, " is quantised (", q,
                 "): the CUDA backend has no quantised kernels yet; run it with --device cpu, or use the BF16 "
                 "checkpoint on the GPU");
    if (d == "auto") {
      if (cuda::available()) log(1, a, str_cat("sailvl: ", model_dir, " is quantised (", q, "): running on the CPU"));
      return Device::cpu();
    }
  }
  if (d == "cuda") {
    SAILVL_CHECK(cuda::available(), Cuda, "--device cuda: ", cuda::status().reason, " (use --device cpu)");
    return Device::cuda(0);
  }
  SAILVL_CHECK(d == "auto", Usage, "--device must be cpu, cuda or auto, got '", escape_for_print(d), "'");
  return cuda::available() ? Device::cuda(0) : Device::cpu();
}

int64_t max_tiles_per_image(const Args& a) {
  if (a.on("frames")) return 1;
  const int64_t n = preprocess_options(a).max_tiles;
  return n > 1 ? n + 1 : 1;  // the thumbnail comes only with a grid of several tiles
}

namespace {
// SAILVL_FAKE_FREE_BYTES: a decimal byte count, or unset.
std::optional<uint64_t> fake_free_bytes() {
  const char* v = std::getenv("SAILVL_FAKE_FREE_BYTES");
  if (!v || !*v) return std::nullopt;
  uint64_t n = 0;
  for (const char* p = v; *p; ++p) {
    SAILVL_CHECK(*p >= '0' && *p <= '9' && n < (uint64_t{1} << 60), Usage,
                 "SAILVL_FAKE_FREE_BYTES must be a byte count, got '", escape_for_print(v), "'");
    n = n * 10 + static_cast<uint64_t>(*p - '0');
  }
  return n;
}
}  // namespace

runtime::Workload workload(const Args& a, int64_t tiles, int64_t prompt_tokens, int64_t sequences) {
  runtime::Workload w;
  w.context = a.get_int("ctx-size", 0, 1 << 24);
  w.max_new_tokens = std::max<long long>(a.get_int("max-new-tokens", 0, 1 << 24), 1);
  w.prompt_tokens = prompt_tokens;
  w.tiles = tiles;
  w.cpu_threads = ops::num_threads();
  w.sequences = sequences;
  return w;
}

model::SailVL load_model(const Args& a, const std::string& dir, const Device& device, const runtime::Workload& w) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "RANDOM_WEIGHTS", ec))
    log(1, a, "sailvl: warning: " + dir + " holds random weights (made by sailvl make-model): its words are noise");
  log(1, a, "sailvl: loading " + dir + " on " + device.str() + " ...");
  Progress progress(verbosity(a));
  model::LoadOptions o;
  const std::optional<uint64_t> fake = fake_free_bytes();
  auto preflight = runtime::preflight(device, w, fake);
  o.before_weights = [&](const model::ModelConfig& c, const loader::WeightMap& weights) {
    if (w.context > c.llm.max_position_embeddings)
      log(1, a,
          str_cat("sailvl: warning: -c ", w.context, " is above the model's max_position_embeddings ",
                  c.llm.max_position_embeddings, "; positions past it were never trained"));
    preflight(c, weights);
    // CPU: fill the page cache from disk in one sequential pass (shows progress on a cold start).
    if (device.is_cpu() && verbosity(a) >= 1)
      weights.prefetch([&](uint64_t done, uint64_t total) {
        progress.update("reading weights", static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, "GB");
      });
    progress.done("reading weights");
  };
  if (verbosity(a) >= 1)
    o.progress = [&](uint64_t done, uint64_t total) {
      progress.update("weights to the GPU", static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, "GB");
    };
  model::SailVL m = model::SailVL::load(dir, device, o);
  progress.done("weights to the GPU");
  return m;
}

void apply_threads(const Args& a) { ops::set_num_threads(static_cast<int>(a.get_int("threads", 0, 4096))); }

runtime::GenerationOptions generation_options(const Args& a) {
  runtime::GenerationOptions g;
  g.max_new_tokens = a.get_int("max-new-tokens", 0, 1 << 24);
  g.context_size = a.get_int("ctx-size", 0, 1 << 24);
  const double temp = a.get_double("temp", 0, 100);
  g.sampling.do_sample = temp > 0;
  g.sampling.temperature = temp > 0 ? static_cast<float>(temp) : 1.0f;
  g.sampling.top_k = a.get_int("top-k", 0, 1 << 30);
  g.sampling.top_p = static_cast<float>(a.get_double("top-p", 0, 1));
  SAILVL_CHECK(g.sampling.top_p > 0, Usage, "--top-p must be in (0, 1], got ", a.get("top-p"));
  g.sampling.repetition_penalty = static_cast<float>(a.get_double("repeat-penalty", 1e-6, 100));
  g.sampling.seed = static_cast<uint64_t>(a.get_int("seed", 0, INT64_MAX));
  runtime::check_sampling(g.sampling);
  return g;
}

image::PreprocessOptions preprocess_options(const Args& a) {
  image::PreprocessOptions p;
  p.max_tiles = a.get_int("max-tiles", 1, image::kMaxTilesLimit);
  return p;
}

std::vector<runtime::ImageInput> read_images(const Args& a, const std::vector<std::string>& paths) {
  std::vector<runtime::ImageInput> out;
  for (const std::string& p : paths) {
    out.push_back(runtime::ImageInput::from_file(p));
    out.back().frame = a.on("frames");
  }
  return out;
}

runtime::SessionOptions session_options(const Args& a) {
  runtime::SessionOptions so;
  so.context = a.get_int("ctx-size", 0, 1 << 24);
  so.preprocess = preprocess_options(a);
  so.layout = a.on("frames") ? runtime::ImageLayout::Video : runtime::ImageLayout::Auto;
  if (a.has("system")) so.system_message = a.get("system");
  if (a.has("parse-special")) so.parse_special = a.on("parse-special");
  if (a.has("image-cache")) so.image_cache_bytes = static_cast<uint64_t>(a.get_int("image-cache", 1, 1 << 20)) << 20;
  return so;
}

void attach_progress(runtime::GenerationOptions& g, Progress& p) {
  g.progress = [&p](runtime::Phase ph, int64_t done, int64_t total) {
    const char* stage = ph == runtime::Phase::Vision ? "vision" : "prefill";
    p.update(stage, static_cast<double>(done), static_cast<double>(total),
             ph == runtime::Phase::Vision ? "layers" : "tokens");
    if (done >= total) p.done(stage);
  };
}

int verbosity(const Args& a) { return a.on("quiet") ? 0 : a.on("verbose") ? 2 : 1; }

void log(int level, const Args& a, const std::string& line) {
  if (verbosity(a) >= level) std::cerr << line << "\n";
}

namespace {
std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_busy{true};
std::atomic<int64_t> g_last_idle_sigint_ms{-1000000};

int64_t now_ms() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void say(const char* msg, size_t n) {
  ssize_t r = ::write(2, msg, n);
  (void)r;
}

void on_sigint(int) {
  if (g_busy.load()) {
    if (g_interrupted.exchange(true)) _exit(130);  // second Ctrl-C while stopping: leave now
    const char msg[] = "\n[interrupted: stopping; Ctrl-C again to quit]\n";
    say(msg, sizeof msg - 1);
    return;
  }
  const int64_t t = now_ms();
  if (t - g_last_idle_sigint_ms.exchange(t) < 2000) _exit(130);
  const char msg[] = "\n(Ctrl-C again within 2 s to quit, or /exit)\n";
  say(msg, sizeof msg - 1);
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
}
void set_busy(bool busy) { g_busy = busy; }
const std::atomic<bool>& interrupted() { return g_interrupted; }
void clear_interrupt() { g_interrupted = false; }
void request_stop() { g_interrupted = true; }

std::string summary_line(const runtime::Timings& t) {
  auto plural = [](int64_t n, const char* one, const char* many) { return str_cat(n, " ", n == 1 ? one : many); };
  char ttft[160];
  std::snprintf(ttft, sizeof ttft, "TTFT %.0f ms (vision %.0f, projector %.0f, prefill %.0f)",
                t.vision_ms + t.projector_ms + t.prefill_ms, t.vision_ms, t.projector_ms, t.prefill_ms);
  char rate[64];
  std::snprintf(rate, sizeof rate, " at %.1f tok/s", t.decode_tokens_per_s());
  std::string s = "[" + plural(t.prompt_tokens, "prompt token", "prompt tokens");
  if (t.cached_tokens > 0) s += str_cat(" (", t.cached_tokens, " cached)");
  s += ", " + plural(t.image_tiles, "image tile", "image tiles");
  if (t.image_tiles > 0 && t.encoded_tiles < t.image_tiles) s += str_cat(" (", t.encoded_tiles, " encoded)");
  return s + " | " + ttft + " | " + plural(t.new_tokens, "token", "tokens") + rate + "]";
}

std::string turn_json(const runtime::GenerationResult& r, const std::string& text, int64_t turn,
                      const nlohmann::ordered_json* profile) {
  const runtime::Timings& t = r.timings;
  nlohmann::ordered_json j;
  if (turn >= 0) j["turn"] = turn;
  j["text"] = text;
  j["tokens"] = r.tokens;
  j["prompt_tokens"] = t.prompt_tokens;
  j["cached_tokens"] = t.cached_tokens;
  j["image_tiles"] = t.image_tiles;
  j["encoded_tiles"] = t.encoded_tiles;
  j["stop"] = runtime::stop_reason_name(r.stop);
  j["finish_reason"] = runtime::finish_reason_name(r.stop);
  j["timings"] = {{"vision_ms", t.vision_ms},   {"projector_ms", t.projector_ms},
                  {"prefill_ms", t.prefill_ms}, {"ttft_ms", t.vision_ms + t.projector_ms + t.prefill_ms},
                  {"decode_ms", t.decode_ms},   {"decode_tokens_per_s", t.decode_tokens_per_s()}};
  if (profile && !profile->is_null()) j["profile"] = *profile;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Observation::Observation(const Args& a) : profile_(a.on("profile")), trace_(a.on("trace")) {
  SAILVL_CHECK(!(profile_ && trace_), Usage,
               "--profile and --trace do not go together: the trace's printing would be in the profile's times");
  if (a.has("trace-layers")) {
    SAILVL_CHECK(trace_, Usage, "--trace-layers needs --trace");
    trace_opt_.layers = runtime::parse_trace_layers(a.get("trace-layers"));
  }
}

Observation::~Observation() = default;

void Observation::begin(const Device& device) {
  if (!profile_ && !trace_) return;
  if (!scope_) {
    device_ = device;
    if (profile_) profiler_ = std::make_unique<runtime::Profiler>(device);
    if (trace_) tracer_ = std::make_unique<runtime::Tracer>(stderr, trace_opt_);
    scope_.emplace(profiler_ ? static_cast<Observer*>(profiler_.get()) : tracer_.get());
  }
  if (profiler_) profiler_->begin();
}

void Observation::stop() {
  if (profiler_) profiler_->end();
}

nlohmann::ordered_json Observation::end() {
  if (!profiler_) return nullptr;
  profiler_->end();
  if (!limits_) limits_ = runtime::measure_limits(device_);
  const runtime::Profile p = profiler_->result(*limits_);
  std::cerr << runtime::format_profile(p) << std::flush;
  return runtime::profile_json(p);
}

}  // namespace sailvl::cli
