// --trace: see trace.h.
#include "runtime/trace.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace sailvl::runtime {

namespace {

std::string dtype_shape(const Tensor& t) { return std::string(dtype_name(t.dtype())) + shape_str(t.shape()); }

// "| mean m std s max|x| a" of a tensor's elements (copied to the host first when on a device).
std::string statistic(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
  const std::vector<float> v = host.to_floats();
  double sum = 0, sq = 0, amax = 0;
  for (float f : v) {
    sum += f;
    sq += static_cast<double>(f) * f;
    amax = std::max(amax, std::fabs(static_cast<double>(f)));
  }
  const double n = static_cast<double>(v.size()), mean = sum / n;
  const double var = std::max(sq / n - mean * mean, 0.0);
  char b[96];
  std::snprintf(b, sizeof b, "  | mean %.4g std %.4g max|x| %.4g", mean, std::sqrt(var), amax);
  return b;
}

}  // namespace

std::vector<int64_t> parse_trace_layers(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  // Split at every comma, so an empty item anywhere ("1,", ",1", "1,,2") is refused too.
  for (size_t at = 0; at <= text.size();) {
    size_t comma = text.find(',', at);
    if (comma == std::string::npos) comma = text.size();
    const std::string tok = text.substr(at, comma - at);
    at = comma + 1;
    char* end = nullptr;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    SAILVL_CHECK(!tok.empty() && end && *end == 0 && v > -100000 && v < 100000, Usage, flag,
                 " takes layer numbers like 0,1,-1 (negative: from the last layer), got '", escape_for_print(text),
                 "'");
    out.push_back(v);
  }
  return out;
}

Tracer::Tracer(std::FILE* out, TraceOptions opt) : out_(out), opt_(std::move(opt)) {}

std::string Tracer::describe(const OpCall& c) {
  char name[32];
  std::snprintf(name, sizeof name, "%-17s", c.op);
  std::string s = name;
  for (int i = 0; i < c.n_in; ++i) {
    const OpArg& a = c.in[static_cast<size_t>(i)];
    if (i) s += ", ";
    s += std::string(a.name) + " " + (!a.text.empty() ? a.text : a.tensor ? dtype_shape(*a.tensor) : "-");
  }
  if (c.out) s += (c.n_in ? " -> " : "-> ") + dtype_shape(*c.out);
  if (c.result >= 0) s += str_cat(" -> token ", c.result);
  if (!c.note.empty()) s += " (" + c.note + ")";
  return s;
}

bool Tracer::shown(int64_t layer, int64_t layers) const {
  if (opt_.layers.empty()) return true;
  return std::any_of(opt_.layers.begin(), opt_.layers.end(),
                     [&](int64_t l) { return l == layer || (l < 0 && layers + l == layer); });
}

void Tracer::print(int indent, const std::string& text) { std::fprintf(out_, "%*s%s\n", 2 * indent, "", text.c_str()); }

void Tracer::flush_skipped() {
  if (skip_first_ < 0) return;
  print(1, skip_first_ == skip_last_
               ? str_cat("... layer ", skip_first_, " not shown (", skip_ops_, " ops)")
               : str_cat("... layers ", skip_first_, "-", skip_last_, " not shown (", skip_ops_, " ops)"));
  skip_first_ = skip_last_ = -1;
  skip_ops_ = 0;
}

void Tracer::stage_entered(const Stage& s) {
  flush_skipped();
  print(0, s.name ? stage_label(s) : "(no stage)");
}

void Tracer::stage_left(const Stage&) {
  flush_skipped();
  std::fflush(out_);
}

void Tracer::layer_entered(int64_t layer, int64_t layers) {
  layer_ = layer;
  layers_ = layers;
  layer_shown_ = shown(layer, layers);
  if (layer_shown_) {
    flush_skipped();
    print(1, str_cat("layer ", layer, " of ", layers));
  } else {
    if (skip_first_ < 0) skip_first_ = layer;
    skip_last_ = layer;
  }
}

void Tracer::layer_left(int64_t, int64_t) {
  layer_ = -1;
  layer_shown_ = true;
}

void Tracer::op_end(const OpCall& c) {
  if (!layer_shown_) {
    ++skip_ops_;
    return;
  }
  flush_skipped();
  const bool in_layer = layer_ >= 0;
  std::string line = describe(c);
  // Values for the ops outside the layer loops and in the first and last layer of a stack.
  if (c.out && (!in_layer || layer_ == 0 || layer_ == layers_ - 1)) {
    try {
      line += statistic(*c.out);
    } catch (const std::exception& e) {  // an observer must not throw into the forward pass
      line += std::string("  | (no statistic: ") + e.what() + ")";
    }
  }
  print(in_layer ? 2 : 1, line);
}

}  // namespace sailvl::runtime
