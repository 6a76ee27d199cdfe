// `sailvl serve`: the OpenAI-compatible HTTP server (server/http.h) on the continuous-batching
// scheduler (runtime/scheduler.h).
//
// Start-up: the socket opens first (/health answers 503 while loading), then the memory preflight
// for --parallel slots of -c tokens each, then the weights. SIGINT or SIGTERM: stop taking requests,
// let running answers finish for up to --grace seconds (then cancel them), exit 0; a second SIGINT
// exits at once with 130.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/common.h"
#include "runtime/scheduler.h"
#include "server/http.h"

namespace sailvl::cli {
namespace {

std::atomic<int> g_signals{0};

void on_signal(int sig) {
  if (g_signals.fetch_add(1) > 0 && sig == SIGINT) _exit(130);  // a second Ctrl-C: leave now
}

void setup(Args& a) {
  a.usage_line = "sailvl serve -m DIR [--host 127.0.0.1] [--port 8080] [--parallel N] [options]";
  a.description =
      "An OpenAI-compatible HTTP server: POST /v1/chat/completions (streaming or not, images as data URLs),\n"
      "GET /v1/models, /health (readiness), /metrics (Prometheus). Requests are served together: each decode\n"
      "step advances every active sequence in one batched forward. Binds 127.0.0.1 unless --host says otherwise.";
  add_model_flags(a);
  a.option("--host", "ADDR", "address to listen on", "127.0.0.1");
  a.option("--port", "N", "port (0: any free port, printed on stderr)", "8080");
  a.option("--parallel", "N", "sequences served at once (slots, each with its own KV cache of -c tokens)", "4");
  a.option("-c,--ctx-size", "N", "tokens one slot may hold (0 = the model's max_position_embeddings)", "8192");
  a.option("-n,--max-new-tokens", "N", "max_tokens when a request gives none", "1024");
  a.option("--max-queue", "N", "requests waiting for a slot before 429", "64");
  a.option("--api-key", "KEY", "require 'Authorization: Bearer KEY' on /v1/* (default: $SAILVL_API_KEY)");
  a.option("--allow-files", "DIR", "accept file:// image URLs under DIR (default: only data: URLs)");
  a.option("--max-tiles", "N", "tiles per image (the default and the cap of a request's max_tiles)", "10");
  a.option("--max-images", "N", "images per request", "16");
  a.option("--max-body", "MiB", "request body limit", "32");
  a.option("--image-cache", "MiB", "image-embedding cache bound (default 512 on CPU, 1024 on a GPU)");
  a.option("--name", "ID", "the model id /v1/models reports (default: the directory's name)");
  a.option("--grace", "S", "seconds running answers may take to finish on shutdown", "10");
  a.examples = {"sailvl serve -m ~/models/SAIL-VL-1d5-2B --parallel 8",
                "sailvl serve -m DIR --host 0.0.0.0 --port 9000 --api-key secret -c 4096",
                "curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' "
                "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'"};
}

int run(Args& a) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  set_busy(true);
  apply_threads(a);
  const std::string dir = resolve_model_dir(a.get("model"));
  const Device device = pick_device(a, dir);
  const int64_t slots = a.get_int("parallel", 1, 1024);

  server::ServerOptions so;
  so.host = a.get("host");
  so.port = static_cast<int>(a.get_int("port", 0, 65535));
  so.api_key = a.get_or("api-key", "");
  if (so.api_key.empty())
    if (const char* k = std::getenv("SAILVL_API_KEY")) so.api_key = k;
  so.model_name = a.get_or("name", std::filesystem::path(dir).filename().string());
  so.default_max_tokens = a.get_int("max-new-tokens", 1, 1 << 24);
  so.limits.max_tiles = a.get_int("max-tiles", 1, image::kMaxTilesLimit);
  so.limits.max_images = a.get_int("max-images", 1, 256);
  so.limits.max_body_bytes = static_cast<size_t>(a.get_int("max-body", 1, 4096)) << 20;
  if (a.has("allow-files")) {
    std::error_code ec;
    SAILVL_CHECK(std::filesystem::is_directory(a.get("allow-files"), ec), Usage, "--allow-files ",
                 escape_for_print(a.get("allow-files")), " is not a directory");
    so.limits.allow_files = a.get("allow-files");
  }
  const int64_t max_queue = a.get_int("max-queue", 0, 1 << 20);
  so.http_threads = slots + max_queue + 8;

  server::HttpServer http(so);
  const int port = http.start();
  std::cerr << "sailvl serve: listening on http://" << so.host << ":" << port << " (loading the model)\n";

  // The memory plan: every slot's KV cache for the whole context, one image per vision pass.
  runtime::Workload w = workload(a, max_tiles_per_image(a), 0, slots);
  const model::SailVL m = load_model(a, dir, device, w);
  runtime::SchedulerOptions sch;
  sch.slots = slots;
  sch.context = a.get_int("ctx-size", 0, 1 << 24);
  sch.max_queue = max_queue;
  if (a.has("image-cache"))
    sch.image_cache =
        std::make_shared<runtime::ImageCache>(static_cast<uint64_t>(a.get_int("image-cache", 1, 1 << 20)) << 20);
  runtime::Scheduler scheduler(m, sch);
  http.ready(&scheduler);
  std::cerr << "sailvl serve: ready: " << m.config().describe() << " on " << device.str() << ", " << slots
            << " slots of " << scheduler.context() << " tokens, http://" << so.host << ":" << port << "\n";

  while (g_signals.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::cerr << "sailvl serve: shutting down (finishing running answers)\n";
  http.shutdown(std::chrono::milliseconds(a.get_int("grace", 0, 3600) * 1000));
  std::cerr << "sailvl serve: stopped\n";
  return 0;
}

}  // namespace

SAILVL_COMMAND(serve, "OpenAI-compatible HTTP server with continuous batching", setup, run);

}  // namespace sailvl::cli
