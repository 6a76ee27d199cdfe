// The HTTP server: see http.h.
#include "server/http.h"

#include <httplib.h>

#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "runtime/chat.h"
#include "tensor/log.h"

namespace sailvl::server {

namespace {

using nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

std::string error_body(const std::string& message, const std::string& type, const std::string& param,
                       const std::string& code) {
  ordered_json e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? ordered_json(nullptr) : ordered_json(param);
  e["code"] = code.empty() ? ordered_json(nullptr) : ordered_json(code);
  return ordered_json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

const char* type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "",
                const std::string& code = "") {
  res.status = status;
  res.set_content(error_body(message, type_for(status), param, code), "application/json");
}

// A model failure, as the API reports it: 500 for what went wrong inside, 400 for bad input found late.
int status_of(const Error& e) {
  switch (e.kind()) {
    case ErrorKind::Usage:
    case ErrorKind::BadImage:
    case ErrorKind::BadTokenizer:
    case ErrorKind::ContextOverflow: return 400;
    default: return 500;
  }
}

std::string completion_id() {
  static std::atomic<uint64_t> n{0};
  return str_cat("chatcmpl-", std::time(nullptr), "-", ++n);
}

ordered_json usage_json(const runtime::GenerationResult& r, int64_t prompt_tokens) {
  const int64_t completion = static_cast<int64_t>(r.tokens.size());
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", prompt_tokens + completion},
          {"prompt_tokens_details", {{"cached_tokens", r.timings.cached_tokens}}}};
}

std::string dump(const ordered_json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

HttpServer::HttpServer(ServerOptions opt) : opt_(std::move(opt)), http_(std::make_unique<httplib::Server>()) {
  routes();
}

HttpServer::~HttpServer() {
  if (http_->is_running()) http_->stop();
  if (thread_.joinable()) thread_.join();
}

int HttpServer::start() {
  const size_t threads = static_cast<size_t>(std::clamp<int64_t>(opt_.http_threads, 4, 512));
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(opt_.limits.max_body_bytes);
  http_->set_read_timeout(30, 0);
  http_->set_write_timeout(30, 0);
  port_ = opt_.port == 0 ? http_->bind_to_any_port(opt_.host)
                         : (http_->bind_to_port(opt_.host, opt_.port) ? opt_.port : -1);
  SAILVL_CHECK(port_ > 0, Usage, "cannot listen on ", opt_.host, ":", opt_.port,
               " (in use, or not an address of this host)");
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return port_;
}

void HttpServer::ready(runtime::Scheduler* sched) { sched_ = sched; }

void HttpServer::shutdown(std::chrono::milliseconds grace) {
  draining_ = true;
  if (runtime::Scheduler* s = sched_.load()) s->drain(grace);
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::routes() {
  httplib::Server& s = *http_;
  // Errors the library produces itself (404, 413, a malformed request line) get the JSON body too.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const char* msg = res.status == 413   ? "the request body is too large"
                      : res.status == 404 ? "no such endpoint"
                                          : "bad request";
    res.set_content(error_body(msg, type_for(res.status), "", ""), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, what);
  });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_) return send_error(res, 503, "shutting down");
    if (!sched_.load()) return send_error(res, 503, "loading the model");
    res.set_content(R"({"status":"ok"})", "application/json");
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    runtime::Scheduler* sc = sched_.load();
    const runtime::SchedulerStats st = sc ? sc->stats() : runtime::SchedulerStats{};
    res.set_content(metrics_.render(sc ? &st : nullptr), "text/plain; version=0.0.4");
  });

  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    if (opt_.api_key.empty()) return true;
    if (req.get_header_value("Authorization") == "Bearer " + opt_.api_key) return true;
    send_error(res, 401, "missing or wrong API key (Authorization: Bearer KEY)", "", "invalid_api_key");
    return false;
  };

  s.Get("/v1/models", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    ordered_json m = {{"id", opt_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "sailvl"}};
    res.set_content(dump({{"object", "list"}, {"data", ordered_json::array({m})}}), "application/json");
  });

  s.Post("/v1/chat/completions", [this, authorized](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return metrics_.request(401);
    runtime::Scheduler* sched = sched_.load();
    if (draining_ || !sched) {
      metrics_.request(503);
      return send_error(res, 503, draining_ ? "shutting down" : "loading the model");
    }
    ChatCompletion c;
    runtime::Job job;
    try {
      c = parse_chat_completion(req.body, opt_.limits, opt_.default_max_tokens);
      job = make_job(sched->model(), c, sched->context());
    } catch (const HttpError& e) {
      metrics_.request(e.status);
      return send_error(res, e.status, e.what(), e.param, e.code);
    } catch (const Error& e) {
      metrics_.request(status_of(e));
      return send_error(res, status_of(e), e.what());
    }
    std::shared_ptr<runtime::Stream> stream = sched->submit(std::move(job));
    if (!stream) {
      metrics_.request(429);
      res.set_header("Retry-After", "1");
      return send_error(res, 429, "the request queue is full; retry shortly");
    }
    const std::string id = completion_id(), model = c.model.empty() ? opt_.model_name : c.model;
    const int64_t created = static_cast<int64_t>(std::time(nullptr));
    auto account = [this](const runtime::Stream& st) {
      const runtime::GenerationResult& r = st.result();
      metrics_.tokens(st.prompt_tokens(), r.timings.cached_tokens, static_cast<int64_t>(r.tokens.size()));
      if (st.ttft_seconds() >= 0) metrics_.ttft.observe(st.ttft_seconds());
      for (double ms : r.timings.token_ms) metrics_.inter_token.observe(ms / 1000);
    };

    if (!c.stream) {  // wait for the whole answer
      std::string text;
      while (stream->wait_text(text, std::chrono::milliseconds(500))) {
      }
      if (const auto& e = stream->error()) {
        metrics_.request(status_of(*e));
        return send_error(res, status_of(*e), e->what());
      }
      const runtime::GenerationResult& r = stream->result();
      ordered_json msg = {{"role", "assistant"}, {"content", runtime::clean_response(r.text)}};
      ordered_json out = {
          {"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"choices", ordered_json::array(
                          {{{"index", 0}, {"message", msg}, {"finish_reason", runtime::finish_reason_name(r.stop)}}})},
          {"usage", usage_json(r, stream->prompt_tokens())}};
      res.set_content(dump(out), "application/json");
      metrics_.request(200);
      account(*stream);
      return;
    }

    // Server-sent events: a role delta, content deltas as they come, the finish reason, optionally
    // the usage, then [DONE]. A client that goes away cancels the sequence.
    metrics_.request(200);
    const bool usage = c.include_usage;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [stream, id, model, created, usage, account, started = false](size_t, httplib::DataSink& sink) mutable {
          auto chunk = [&](const ordered_json& delta, const ordered_json& finish) {
            ordered_json c = {
                {"id", id},
                {"object", "chat.completion.chunk"},
                {"created", created},
                {"model", model},
                {"choices", ordered_json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
            const std::string line = "data: " + dump(c) + "\n\n";
            return sink.write(line.data(), line.size());
          };
          if (!started) {
            started = true;
            if (!chunk({{"role", "assistant"}, {"content", ""}}, nullptr)) {
              stream->cancel();
              return false;
            }
          }
          std::string text;
          const bool more = stream->wait_text(text, std::chrono::milliseconds(100));
          if (!text.empty() && !chunk({{"content", text}}, nullptr)) {
            stream->cancel();  // the client is gone
            return false;
          }
          if (!sink.is_writable()) {
            stream->cancel();
            return false;
          }
          if (more) return true;
          // The end.
          std::string tail;
          if (const auto& e = stream->error()) {
            tail = "data: " + error_body(e->what(), "server_error", "", "") + "\n\n";
          } else {
            const runtime::GenerationResult& r = stream->result();
            if (!chunk(ordered_json::object(), runtime::finish_reason_name(r.stop))) return false;
            if (usage) {
              ordered_json u = {{"id", id},
                                {"object", "chat.completion.chunk"},
                                {"created", created},
                                {"model", model},
                                {"choices", ordered_json::array()},
                                {"usage", usage_json(r, stream->prompt_tokens())}};
              tail = "data: " + dump(u) + "\n\n";
            }
            account(*stream);
          }
          tail += "data: [DONE]\n\n";
          sink.write(tail.data(), tail.size());
          sink.done();
          return true;
        },
        [stream](bool success) {
          if (!success) stream->cancel();
        });
  });
}

}  // namespace sailvl::server
