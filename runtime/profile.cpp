// --profile: see profile.h.
#include "runtime/profile.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "ops/ops.h"
#include "ops/probes.h"
#include "tensor/cuda_runtime.h"

namespace sailvl::runtime {

namespace {

constexpr const char* kNoStage = "(no stage)";
constexpr size_t kNoMark = static_cast<size_t>(-1);

// The stages in the order of a turn; others follow in the order they were first entered.
constexpr const char* kStageOrder[] = {"preprocess", "vision", "projector", "prefill", "decode"};

double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double pct(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0.0; }

}  // namespace

// ---- limits ----

Limits measure_limits(const Device& device) {
  Limits l;
  try {
    if (device.is_cpu()) {
      const ops::HostLimits h = ops::measure_host_limits();
      l.memory_gbs = h.read_gbs;
      l.memory_probe = "read probe";
      l.compute_gflops = h.fma_gflops;
      l.compute_probe = "F32 FMA probe";
    } else {
      const ops::DeviceLimits d = ops::measure_device_limits(device);
      l.memory_gbs = d.copy_gbs;
      l.memory_probe = "device copy probe";
      l.compute_gflops = d.gemm_tflops * 1e3;
      l.compute_probe = "BF16 GEMM probe";
    }
  } catch (const std::exception& e) {
    l = Limits{};
    l.error = e.what();
  }
  return l;
}

// ---- recording ----

Profiler::Profiler(const Device& device) : device_(device) {}
Profiler::~Profiler() = default;

void Profiler::begin() {
  stages_.clear();
  open_.clear();
  pending_.clear();
  marks_.clear();
  error_.clear();
  running_ = true;
  span_begin_ = span_end_ = Clock::now();
}

void Profiler::end() {
  if (!running_) return;
  span_end_ = Clock::now();
  running_ = false;
  resolve_marks();  // CUDA ops outside any stage, if there were some
}

size_t Profiler::stage_index(const char* name) {
  for (size_t i = 0; i < stages_.size(); ++i)
    if (stages_[i].name == name) return i;
  stages_.push_back({name, 0, 0, 0, {}});
  return stages_.size() - 1;
}

size_t Profiler::row_index(StageRec& s, const char* op) {
  for (size_t i = 0; i < s.rows.size(); ++i)
    if (s.rows[i].op == op) return i;
  s.rows.push_back({op, 0, 0, 0, 0, 0});
  return s.rows.size() - 1;
}

void Profiler::stage_entered(const Stage& s) {
  if (!running_) return;
  const Clock::time_point now = Clock::now();
  const uint64_t launches = cuda::launches();
  if (!open_.empty()) {  // the outer stage pauses while this one runs
    StageRec& outer = stages_[open_.back().stage];
    outer.ms += ms_between(open_.back().since, now);
    outer.launches += launches - open_.back().launches_since;
  }
  const size_t i = stage_index(s.name ? s.name : kNoStage);
  ++stages_[i].entries;
  open_.push_back({i, now, launches});
}

void Profiler::stage_left(const Stage&) {
  if (!running_ || open_.empty()) return;  // a stage entered before begin()
  const Clock::time_point now = Clock::now();
  const uint64_t launches = cuda::launches();
  const Open top = open_.back();
  open_.pop_back();
  stages_[top.stage].ms += ms_between(top.since, now);
  stages_[top.stage].launches += launches - top.launches_since;
  if (!open_.empty()) {  // the outer stage resumes
    open_.back().since = now;
    open_.back().launches_since = launches;
  }
  resolve_marks();  // after the stage's time is taken: the waiting is in no stage
}

void Profiler::op_begin(const OpCall& c) {
  if (!running_) return;
  op_mark_ = kNoMark;
  if (c.device.is_cuda()) {
    try {
      op_mark_ = marks_.mark(c.device);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  op_launches_ = cuda::launches();
  op_since_ = Clock::now();
}

void Profiler::op_end(const OpCall& c) {
  if (!running_) return;
  const Clock::time_point now = Clock::now();
  const uint64_t launches = cuda::launches();
  const size_t si = open_.empty() ? stage_index(kNoStage) : open_.back().stage;
  StageRec& s = stages_[si];
  const size_t ri = row_index(s, c.op);
  Row& r = s.rows[ri];
  ++r.calls;
  r.bytes += c.bytes;
  r.flops += c.flops;
  r.launches += launches - op_launches_;
  if (!c.device.is_cuda()) {
    r.ms += ms_between(op_since_, now);
    return;
  }
  if (op_mark_ == kNoMark) return;
  try {
    pending_.push_back({si, ri, op_mark_, marks_.mark(c.device)});
  } catch (const std::exception& e) {
    error_ = e.what();
  }
}

void Profiler::resolve_marks() {
  if (pending_.empty()) return;
  try {
    marks_.wait();
    for (const Pending& p : pending_) stages_[p.stage].rows[p.row].ms += marks_.ms_between(p.from, p.to);
  } catch (const std::exception& e) {
    error_ = e.what();
  }
  pending_.clear();
  marks_.clear();
}

// ---- the numbers ----

Profile Profiler::result(const Limits& limits) const {
  Profile p;
  p.device = device_.str();
  p.limits = limits;
  p.threads = ops::num_threads();
  p.error = error_;

  // Canonical stages: "sampling" is part of decode.
  struct Merged {
    ProfileStage st;
    std::vector<Row> rows;
    uint64_t forward_launches = 0, sampling_launches = 0;
  };
  std::vector<Merged> merged;
  auto find = [&merged](const std::string& name) -> Merged& {
    for (Merged& m : merged)
      if (m.st.name == name) return m;
    merged.push_back({});
    merged.back().st.name = name;
    return merged.back();
  };
  for (const char* name : kStageOrder)
    for (const StageRec& s : stages_)
      if (s.name == name || (std::strcmp(name, "decode") == 0 && s.name == "sampling")) (void)find(name);
  for (const StageRec& s : stages_) {
    const bool sampling = s.name == "sampling";
    Merged& m = find(sampling ? "decode" : s.name);
    m.st.ms += s.ms;
    m.st.launches += s.launches;
    if (sampling) {
      m.st.samples += s.entries;
      m.sampling_launches += s.launches;
    } else {
      m.st.entries += s.entries;
      if (s.name == "decode") {
        m.st.steps += s.entries;
        m.forward_launches += s.launches;
      }
    }
    for (const Row& r : s.rows) {
      auto it = std::find_if(m.rows.begin(), m.rows.end(), [&r](const Row& x) { return x.op == r.op; });
      if (it == m.rows.end()) {
        m.rows.push_back(r);
      } else {
        it->calls += r.calls;
        it->ms += r.ms;
        it->bytes += r.bytes;
        it->flops += r.flops;
        it->launches += r.launches;
      }
    }
  }

  double staged = 0;
  for (Merged& m : merged) {
    ProfileStage& st = m.st;
    double in_ops = 0;
    for (const Row& r : m.rows) in_ops += r.ms;
    if (st.entries == 0 && st.samples == 0) st.ms = in_ops;  // ops outside any stage: no wall time of their own
    st.outside_ms = st.ms - in_ops;
    st.outside_share = pct(st.outside_ms, st.ms);
    if (st.name == "decode")
      st.launches_per_token =
          (st.steps > 0 ? static_cast<double>(m.forward_launches) / static_cast<double>(st.steps) : 0.0) +
          (st.samples > 0 ? static_cast<double>(m.sampling_launches) / static_cast<double>(st.samples) : 0.0);
    for (const Row& r : m.rows) {
      ProfileOp o;
      o.op = r.op;
      o.calls = r.calls;
      o.ms = r.ms;
      o.share = pct(r.ms, st.ms);
      o.bytes = r.bytes;
      o.flops = r.flops;
      o.launches = r.launches;
      const double s = r.ms / 1e3;
      if (s > 0) {
        o.gbs = r.bytes / s / 1e9;
        o.gflops = r.flops / s / 1e9;
      }
      // The roofline: the time the op would take at the limit it is closest to.
      const double t_mem = limits.memory_gbs > 0 ? r.bytes / (limits.memory_gbs * 1e9) : 0.0;
      const double t_cmp = limits.compute_gflops > 0 ? r.flops / (limits.compute_gflops * 1e9) : 0.0;
      if (s > 0 && limits.memory_gbs > 0 && limits.compute_gflops > 0 && (r.bytes > 0 || r.flops > 0)) {
        o.percent_of_limit = 100.0 * std::max(t_mem, t_cmp) / s;
        o.bound = t_cmp > t_mem ? "compute" : "memory";
      }
      st.ops.push_back(std::move(o));
    }
    std::sort(st.ops.begin(), st.ops.end(), [](const ProfileOp& a, const ProfileOp& b) { return a.ms > b.ms; });
    staged += st.ms;
  }

  const Clock::time_point end = running_ ? Clock::now() : span_end_;
  p.span_ms = span_begin_ == Clock::time_point{} ? staged : ms_between(span_begin_, end);
  p.outside_ms = p.span_ms - staged;
  p.outside_share = pct(p.outside_ms, p.span_ms);
  for (Merged& m : merged) {
    m.st.share = pct(m.st.ms, p.span_ms);
    p.stages.push_back(std::move(m.st));
  }
  return p;
}

// ---- printing ----

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

std::string format_profile(const Profile& p) {
  const bool gpu = p.device.rfind("cuda", 0) == 0;
  // On a GPU rates are TFLOP/s, on a CPU GFLOP/s.
  const double flop_unit = gpu ? 1e3 : 1.0;
  const char* flop_name = gpu ? "TFLOP/s" : "GFLOP/s";
  std::string s = "\nprofile: " + p.device;
  if (!gpu) s += str_cat(", ", p.threads, " threads");
  if (p.limits.memory_gbs > 0)
    s += str_cat("; limits: ", fmt("%.1f", p.limits.memory_gbs), " GB/s (", p.limits.memory_probe, "), ",
                 fmt("%.1f", p.limits.compute_gflops / flop_unit), " ", flop_name, " (", p.limits.compute_probe, ")");
  else
    s += "; limits unknown" + (p.limits.error.empty() ? std::string() : " (" + p.limits.error + ")");
  s += "\n";
  if (!p.error.empty()) s += "warning: the op timing failed (" + p.error + "); the op rows are incomplete\n";

  // The stages.
  char line[256];
  std::snprintf(line, sizeof line, "%-18s %12s %7s\n", "stage", "time ms", "share");
  s += line;
  for (const ProfileStage& st : p.stages) {
    std::string extra;
    if (st.name == "decode") {
      const int64_t tokens = std::max(st.steps, st.samples);
      extra = str_cat("  ", st.steps, " forward steps, ", st.samples, " samples");
      if (tokens > 0) extra += ", " + fmt("%.2f", st.ms / static_cast<double>(tokens)) + " ms/token";
      if (gpu) extra += ", " + fmt("%.0f", st.launches_per_token) + " kernel launches/token";
    } else if (st.entries > 1) {
      extra = str_cat("  ", st.entries, " times");
    }
    std::snprintf(line, sizeof line, "%-18s %12.1f %6.1f%%", st.name.c_str(), st.ms, st.share);
    s += line + extra + "\n";
  }
  std::snprintf(line, sizeof line, "%-18s %12.1f %6.1f%%\n", "(outside stages)", p.outside_ms, p.outside_share);
  s += line;
  std::snprintf(line, sizeof line, "%-18s %12.1f %6.1f%%\n", "total", p.span_ms, 100.0);
  s += line;

  // Each stage's ops.
  for (const ProfileStage& st : p.stages) {
    s += str_cat("\n", st.name, " (", fmt("%.1f", st.ms), " ms)\n");
    std::snprintf(line, sizeof line, "  %-17s %7s %11s %7s %10s %10s %8s %8s %9s", "op", "calls", "time ms", "share",
                  "MB", "GFLOP", "GB/s", flop_name, "% limit");
    s += line;
    s += gpu ? "          launches\n" : "\n";
    for (const ProfileOp& o : st.ops) {
      const std::string limit =
          o.percent_of_limit >= 0 ? fmt("%8.1f%%", o.percent_of_limit) + " " + o.bound : std::string("       -");
      std::snprintf(line, sizeof line, "  %-17s %7lld %11.2f %6.1f%% %10.1f %10.3f %8.2f %8.2f ", o.op.c_str(),
                    static_cast<long long>(o.calls), o.ms, o.share, o.bytes / 1e6, o.flops / 1e9, o.gbs,
                    o.gflops / flop_unit);
      s += line + limit;
      if (gpu) s += str_cat("  ", o.launches);
      s += "\n";
    }
    std::snprintf(line, sizeof line, "  %-17s %7s %11.2f %6.1f%%\n", "(outside ops)", "", st.outside_ms,
                  st.outside_share);
    s += line;
  }
  return s;
}

nlohmann::ordered_json profile_json(const Profile& p) {
  nlohmann::ordered_json j;
  j["device"] = p.device;
  j["threads"] = p.threads;
  j["limits"] = {{"memory_GBps", p.limits.memory_gbs},
                 {"memory_probe", p.limits.memory_probe},
                 {"compute_GFLOPs", p.limits.compute_gflops},
                 {"compute_probe", p.limits.compute_probe}};
  if (!p.limits.error.empty()) j["limits"]["error"] = p.limits.error;
  if (!p.error.empty()) j["error"] = p.error;
  j["span_ms"] = p.span_ms;
  j["outside_stages_ms"] = p.outside_ms;
  j["outside_stages_share"] = p.outside_share;
  j["stages"] = nlohmann::ordered_json::array();
  for (const ProfileStage& st : p.stages) {
    nlohmann::ordered_json js;
    js["stage"] = st.name;
    js["ms"] = st.ms;
    js["share"] = st.share;
    js["entries"] = st.entries;
    js["launches"] = st.launches;
    if (st.name == "decode") {
      js["steps"] = st.steps;
      js["samples"] = st.samples;
      js["launches_per_token"] = st.launches_per_token;
    }
    js["outside_ops_ms"] = st.outside_ms;
    js["outside_ops_share"] = st.outside_share;
    js["ops"] = nlohmann::ordered_json::array();
    for (const ProfileOp& o : st.ops) {
      nlohmann::ordered_json jo;
      jo["op"] = o.op;
      jo["calls"] = o.calls;
      jo["ms"] = o.ms;
      jo["share"] = o.share;
      jo["bytes"] = o.bytes;
      jo["flops"] = o.flops;
      jo["GBps"] = o.gbs;
      jo["GFLOPs"] = o.gflops;
      jo["percent_of_limit"] = o.percent_of_limit >= 0 ? nlohmann::ordered_json(o.percent_of_limit) : nullptr;
      jo["bound"] = o.bound;
      jo["launches"] = o.launches;
      js["ops"].push_back(std::move(jo));
    }
    j["stages"].push_back(std::move(js));
  }
  return j;
}

}  // namespace sailvl::runtime
