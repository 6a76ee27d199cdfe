// The server's Prometheus metrics (text exposition format 0.0.4), kept with atomics and one mutex for
// the histograms; render() adds the scheduler's gauges at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/scheduler.h"

namespace sailvl::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // "<name>_bucket{le=...} n" lines, _sum and _count.
  std::string render(const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  void request(int status);  // one finished HTTP request on /v1/chat/completions
  void tokens(int64_t prompt, int64_t cached, int64_t generated);
  Histogram ttft{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
  Histogram inter_token{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  std::string render(const runtime::SchedulerStats* s) const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> by_status_;
  std::atomic<uint64_t> prompt_{0}, cached_{0}, generated_{0};
};

}  // namespace sailvl::server
