// `sailvl serve`: an OpenAI-compatible HTTP server (cpp-httplib) in front of the scheduler
// (runtime/scheduler.h: continuous batching).
//
//   POST /v1/chat/completions   the chat API, streamed (SSE) or not (server/request.h for the schema)
//   GET  /v1/models             the one model served
//   GET  /health                200 {"status":"ok"} once the model is loaded, 503 while loading or draining
//   GET  /metrics               Prometheus text: requests by status, tokens, TTFT and inter-token
//                               latency histograms, queue, active slots, KV and image-cache use
//
// The listening socket is opened before the model loads, so a load balancer's readiness probe
// sees 503 until the server can answer. With an API key, /v1/* needs "Authorization: Bearer KEY"
// (401 otherwise); /health and /metrics stay open for probes and scrapers. Every error is an
// OpenAI error object {"error": {"message", "type", "param", "code"}} with its status: 400 bad
// input, 401, 404, 413 body too large, 429 queue full (with Retry-After), 500 a failure inside the
// model (the server keeps serving), 503 not ready / shutting down. A client that disconnects
// mid-stream has its sequence cancelled within one scheduler iteration.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "runtime/scheduler.h"
#include "server/metrics.h"
#include "server/request.h"

namespace httplib {
class Server;
}

namespace sailvl::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (tests)
  std::string api_key;  // empty: no authentication
  std::string model_name = "sailvl";
  int64_t default_max_tokens = 1024;
  int64_t http_threads = 16;  // connections served at once (requests wait in them)
  Limits limits;
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions opt);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Open the socket and start serving (health says 503 until ready()). Returns the bound port.
  int start();
  // The model is loaded: chat requests go to `sched` from now on.
  void ready(runtime::Scheduler* sched);
  // Stop taking new chat requests (503), let the running ones finish for up to `grace`, then
  // close the socket and join the threads.
  void shutdown(std::chrono::milliseconds grace);
  int port() const { return port_; }

 private:
  void routes();

  ServerOptions opt_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::atomic<runtime::Scheduler*> sched_{nullptr};
  std::atomic<bool> draining_{false};
  int port_ = 0;
  Metrics metrics_;
};

}  // namespace sailvl::server
