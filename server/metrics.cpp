// Prometheus metrics: see metrics.h.
#include "server/metrics.h"

#include <cstdio>

#include "tensor/error.h"

namespace sailvl::server {

namespace {
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}
}  // namespace

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
  return out;
}

void Metrics::request(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++by_status_[status];
}

void Metrics::tokens(int64_t prompt, int64_t cached, int64_t generated) {
  prompt_ += static_cast<uint64_t>(prompt);
  cached_ += static_cast<uint64_t>(cached);
  generated_ += static_cast<uint64_t>(generated);
}

std::string Metrics::render(const runtime::SchedulerStats* s) const {
  std::string o;
  auto metric = [&o](const char* name, const char* type, const char* help) {
    o += str_cat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  metric("sailvl_requests_total", "counter", "chat completion requests by HTTP status");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [status, n] : by_status_) o += str_cat("sailvl_requests_total{status=\"", status, "\"} ", n, "\n");
  }
  metric("sailvl_prompt_tokens_total", "counter", "prompt tokens of finished requests");
  o += str_cat("sailvl_prompt_tokens_total ", prompt_.load(), "\n");
  metric("sailvl_cached_prompt_tokens_total", "counter", "prompt tokens whose KV rows were reused from a slot");
  o += str_cat("sailvl_cached_prompt_tokens_total ", cached_.load(), "\n");
  metric("sailvl_generated_tokens_total", "counter", "generated tokens of finished requests");
  o += str_cat("sailvl_generated_tokens_total ", generated_.load(), "\n");
  metric("sailvl_time_to_first_token_seconds", "histogram", "from the request to its first token");
  o += ttft.render("sailvl_time_to_first_token_seconds");
  metric("sailvl_inter_token_latency_seconds", "histogram", "time between consecutive tokens of one answer");
  o += inter_token.render("sailvl_inter_token_latency_seconds");
  if (s) {
    metric("sailvl_queue_length", "gauge", "requests waiting for a slot");
    o += str_cat("sailvl_queue_length ", s->queued, "\n");
    metric("sailvl_active_slots", "gauge", "slots serving a request");
    o += str_cat("sailvl_active_slots ", s->active, "\n");
    metric("sailvl_slots", "gauge", "slots (--parallel)");
    o += str_cat("sailvl_slots ", s->slots, "\n");
    metric("sailvl_kv_cache_tokens", "gauge", "tokens held in the slots' KV caches");
    o += str_cat("sailvl_kv_cache_tokens ", s->kv_tokens, "\n");
    metric("sailvl_kv_cache_capacity_tokens", "gauge", "tokens the slots' KV caches may hold");
    o += str_cat("sailvl_kv_cache_capacity_tokens ", s->kv_capacity, "\n");
    metric("sailvl_image_cache_bytes", "gauge", "bytes of projector rows in the image-embedding cache");
    o += str_cat("sailvl_image_cache_bytes ", s->image_cache_bytes, "\n");
    metric("sailvl_decode_steps_total", "counter", "batched decode steps");
    o += str_cat("sailvl_decode_steps_total ", s->decode_steps, "\n");
    metric("sailvl_decode_rows_total", "counter", "sequences advanced by decode steps (rows / steps = mean batch)");
    o += str_cat("sailvl_decode_rows_total ", s->batched_rows, "\n");
  }
  return o;
}

}  // namespace sailvl::server
