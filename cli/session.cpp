#include "cli/session.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

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
  a.option("-n,--max-new-tokens", "N", "stop after N new tokens", "1024");
  a.option("--temp", "T", "sampling temperature; 0 = greedy", "0");
  a.option("--top-k", "K", "keep the K most likely tokens when sampling (0 = off)", "50");
  a.option("--top-p", "P", "nucleus sampling mass (1 = off)", "1.0");
  a.option("--repeat-penalty", "R", "repetition penalty, HF semantics (1 = off)", "1.0");
  a.option("--seed", "S", "sampling seed (the draw at step i depends on seed and i only)", "0");
  a.option("-c,--ctx-size", "N", "context size in tokens (0 = the model's max_position_embeddings)", "0");
}

void add_image_flags(Args& a) {
  a.multi("-i,--image", "IMG", "image file (PNG, JPEG, WebP)");
  a.option("--max-tiles", "N", "most 448x448 tiles per image (the card's max_num)", "10");
  a.flag("--frames", "treat the -i files as video frames: one tile each, 'Frame-k: <image>' prompt");
}

Device pick_device(const Args& a) {
  const std::string d = a.get("device");
  if (d == "cpu") return Device::cpu();
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

model::LoadOptions load_options(const Args& a, int64_t tiles, int64_t prompt_tokens) {
  runtime::Workload w;
  w.context = a.get_int("ctx-size", 0, 1 << 24);
  w.max_new_tokens = a.get_int("max-new-tokens", 0, 1 << 24);
  w.prompt_tokens = prompt_tokens;
  w.tiles = tiles;
  w.cpu_threads = ops::num_threads();
  model::LoadOptions o;
  o.before_weights = runtime::preflight(pick_device(a), w, fake_free_bytes());
  // Weight upload to a GPU: a progress line on stderr in 10 % steps (never with --quiet).
  if (verbosity(a) >= 1)
    o.progress = [step = 0](uint64_t done, uint64_t total) mutable {
      const int now = total ? static_cast<int>(10 * done / total) : 10;
      if (now == step && done < total) return;
      step = now;
      std::fprintf(stderr, "\rsailvl: weights to the GPU %3d%% (%.2f / %.2f GB)%s", 10 * now, done / 1e9, total / 1e9,
                   done >= total ? "\n" : "");
      std::fflush(stderr);
    };
  return o;
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
  SAILVL_CHECK(g.sampling.top_p > 0, Usage, "--top-p must be in (0, 1]");
  g.sampling.repetition_penalty = static_cast<float>(a.get_double("repeat-penalty", 1e-6, 100));
  g.sampling.seed = static_cast<uint64_t>(a.get_int("seed", 0, INT64_MAX));
  return g;
}

image::PreprocessOptions preprocess_options(const Args& a) {
  image::PreprocessOptions p;
  p.max_tiles = a.get_int("max-tiles", 1, image::kMaxTilesLimit);
  return p;
}

image::PixelBatch load_images(const Args& a, const std::vector<std::string>& paths, const Device& device) {
  if (paths.empty()) return {};
  auto opt = preprocess_options(a);
  // On a GPU the model takes BF16 pixels (the card's `.to(torch.bfloat16)`): round once here, so
  // the upload is a plain copy of half the bytes.
  if (device.is_cuda()) opt.dtype = DType::BF16;
  return a.on("frames") ? image::preprocess_video_frames(paths, opt) : image::preprocess_images(paths, opt);
}

int verbosity(const Args& a) { return a.on("quiet") ? 0 : a.on("verbose") ? 2 : 1; }

void log(int level, const Args& a, const std::string& line) {
  if (verbosity(a) >= level) std::cerr << line << "\n";
}

namespace {
std::atomic<bool> g_interrupted{false};

void on_sigint(int) {
  if (g_interrupted.exchange(true)) _exit(130);  // second Ctrl-C: leave now
  const char msg[] = "\n[interrupted: stopping generation; Ctrl-C again to quit]\n";
  ssize_t r = ::write(2, msg, sizeof msg - 1);
  (void)r;
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
}
const std::atomic<bool>& interrupted() { return g_interrupted; }
void clear_interrupt() { g_interrupted = false; }
void request_stop() { g_interrupted = true; }

std::string summary_line(const runtime::Timings& t) {
  char buf[512];
  const double ttft = t.vision_ms + t.projector_ms + t.prefill_ms;
  std::snprintf(buf, sizeof buf,
                "[%lld prompt tokens, %lld image tiles | TTFT %.0f ms (vision %.0f, projector %.0f, prefill %.0f) | "
                "%lld tokens at %.1f tok/s]",
                static_cast<long long>(t.prompt_tokens), static_cast<long long>(t.image_tiles), ttft, t.vision_ms,
                t.projector_ms, t.prefill_ms, static_cast<long long>(t.new_tokens), t.decode_tokens_per_s());
  return buf;
}

}  // namespace sailvl::cli
