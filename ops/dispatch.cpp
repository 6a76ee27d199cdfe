// The one place where ops choose a backend: by the device of their output (ops/ops.h).
// Shared preconditions (same device for every operand) are checked here; each backend checks
// its own shapes and dtypes.
//
// It is also the one place an Observer (tensor/observe.h: --profile, --trace) sees the ops: when
// one is installed on the calling thread, each op is described (operands, FLOPs and bytes from
// ops/op_cost.h) and run between the observer's op_begin and op_end. When none is, `observed` is a
// thread-local load and a branch around the backend call.
#include <omp.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/op_cost.h"
#include "ops/ops.h"
#include "tensor/observe.h"
#ifdef SAILVL_HAS_CUDA
#include "ops/cuda/cuda_ops.h"
#endif

namespace sailvl::ops {

namespace {

void same_device(const Device& d, std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts)
    SAILVL_CHECK(t->defined() && t->device() == d, Internal, op, ": operand ",
                 t->defined() ? t->describe() : "undefined", " is not on ", d.str());
}

// Runs `run` (the backend call) for op `op` on `device`; when an observer watches this thread,
// `describe` fills the call's operands and cost first and the observer sees it before and after.
template <typename Describe, typename Run>
void observed(const char* op, const Device& device, Describe&& describe, Run&& run) {
  Observer* o = observer();
  if (!o) [[likely]] {
    run();
    return;
  }
  OpCall c;
  c.op = op;
  c.device = device;
  describe(c);
  o->op_begin(c);
  run();
  o->op_end(c);
}

void set_cost(OpCall& c, const OpCost& cost) {
  c.flops = cost.flops;
  c.bytes = cost.bytes;
}

}  // namespace

#ifdef SAILVL_HAS_CUDA
#define SAILVL_DISPATCH(dev, call)                         \
  do {                                                     \
    if ((dev).is_cuda()) return ::sailvl::ops::cuda::call; \
    return ::sailvl::ops::cpu::call;                       \
  } while (0)
#else
#define SAILVL_DISPATCH(dev, call)                                                                       \
  do {                                                                                                   \
    SAILVL_CHECK((dev).is_cpu(), Cuda, "tensor on ", (dev).str(), " but sailvl was built without CUDA"); \
    return ::sailvl::ops::cpu::call;                                                                     \
  } while (0)
#endif

int set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
  return num_threads();
}
int num_threads() { return omp_get_max_threads(); }

void linear(const Tensor& out, const Tensor& x, const Weight& w, const std::optional<Tensor>& bias) {
  // The CUDA kernels read float weights only; q8/q4 are a CPU format (docs/QUANTIZATION.md).
  SAILVL_CHECK(!(w.quantized() && out.device().is_cuda()), BadModel,
               "quantized weights (q8/q4) run on the CPU only; use --device cpu");
  same_device(out.device(), {&x, &w.data}, "linear");
  if (w.scale.defined()) same_device(out.device(), {&w.scale}, "linear");
  if (w.zero.defined()) same_device(out.device(), {&w.zero}, "linear");
  if (bias) same_device(out.device(), {&*bias}, "linear");
  observed(
      "linear", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("x", &x);
        // A quantised weight's data tensor holds packed codes: describe it by its logical shape.
        c.add_input("w", &w.data,
                    w.quantized() ? str_cat(quant_type_name(w.type), shape_str({w.rows(), w.cols()}), " g", w.group)
                                  : std::string());
        if (bias) c.add_input("b", &*bias);
        set_cost(c, linear_cost(out, x, w, bias));
      },
      [&] {
        if (w.quantized()) return cpu::linear(out, x, w, bias);
        SAILVL_DISPATCH(out.device(), linear(out, x, w.data, bias));
      });
}

void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  same_device(out.device(), {&x, &w, &b}, "layer_norm");
  observed(
      "layer_norm", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("x", &x);
        c.add_input("w", &w);
        c.add_input("b", &b);
        set_cost(c, memory_cost({&x, &w, &b}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), layer_norm(out, x, w, b, eps)); });
}

void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
  same_device(out.device(), {&x, &w}, "rms_norm");
  observed(
      "rms_norm", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("x", &x);
        c.add_input("w", &w);
        set_cost(c, memory_cost({&x, &w}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), rms_norm(out, x, w, eps)); });
}

void rope(const Tensor& x, const Tensor& positions, double theta) {
  same_device(x.device(), {&positions}, "rope");
  observed(
      "rope", x.device(),
      [&](OpCall& c) {
        c.out = &x;  // in place
        c.add_input("x", &x);
        c.add_input("positions", &positions);
        set_cost(c, memory_cost({&x, &positions}, &x));
      },
      [&] { SAILVL_DISPATCH(x.device(), rope(x, positions, theta)); });
}

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  same_device(out.device(), {&q, &k, &v}, "attention");
  observed(
      "attention", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("q", &q);
        c.add_input("k", &k);
        c.add_input("v", &v);
        c.note = p.causal ? str_cat("causal, ", p.q_offset, " cached keys") : std::string("full");
        if (p.batch > 1) c.note += str_cat(", ", p.batch, " sequences");
        set_cost(c, attention_cost(out, q, k, v, p));
      },
      [&] { SAILVL_DISPATCH(out.device(), attention(out, q, k, v, p)); });
}

void gelu_erf(const Tensor& out, const Tensor& x) {
  same_device(out.device(), {&x}, "gelu_erf");
  observed(
      "gelu_erf", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("x", &x);
        set_cost(c, memory_cost({&x}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), gelu_erf(out, x)); });
}

void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) {
  same_device(out.device(), {&gate, &up}, "silu_mul");
  observed(
      "silu_mul", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("gate", &gate);
        c.add_input("up", &up);
        set_cost(c, memory_cost({&gate, &up}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), silu_mul(out, gate, up)); });
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  same_device(out.device(), {&a, &b}, "add");
  observed(
      "add", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("a", &a);
        c.add_input("b", &b);
        set_cost(c, memory_cost({&a, &b}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), add(out, a, b)); });
}

void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b) {
  same_device(out.device(), {&a, &s, &b}, "add_scaled");
  observed(
      "add_scaled", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("a", &a);
        c.add_input("s", &s);
        c.add_input("b", &b);
        set_cost(c, memory_cost({&a, &s, &b}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), add_scaled(out, a, s, b)); });
}

void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b) {
  same_device(out.device(), {&pixels, &w, &b}, "patch_embed");
  observed(
      "patch_embed", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("pixels", &pixels);
        c.add_input("w", &w);
        c.add_input("b", &b);
        set_cost(c, patch_embed_cost(out, pixels, w, b));
      },
      [&] { SAILVL_DISPATCH(out.device(), patch_embed(out, pixels, w, b)); });
}

void pixel_shuffle_v2(const Tensor& out, const Tensor& in) {
  same_device(out.device(), {&in}, "pixel_shuffle_v2");
  observed(
      "pixel_shuffle_v2", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("in", &in);
        set_cost(c, memory_cost({&in}, &out));
      },
      [&] { SAILVL_DISPATCH(out.device(), pixel_shuffle_v2(out, in)); });
}

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
  same_device(out.device(), {&ids, &table}, "embedding");
  observed(
      "embedding", out.device(),
      [&](OpCall& c) {
        c.out = &out;
        c.add_input("ids", &ids);
        c.add_input("table", &table);
        // The rows it reads, not the whole table: out.numel() elements of the table's dtype.
        OpCost cost = memory_cost({&ids}, &out);
        cost.bytes += static_cast<double>(out.numel()) * static_cast<double>(dtype_size(table.dtype()));
        set_cost(c, cost);
      },
      [&] { SAILVL_DISPATCH(out.device(), embedding(out, ids, table)); });
}

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  same_device(dst.device(), {&rows, &src}, "scatter_rows");
  observed(
      "scatter_rows", dst.device(),
      [&](OpCall& c) {
        c.out = &dst;  // only rows[k] of it are written
        c.add_input("rows", &rows);
        c.add_input("src", &src);
        // The rows it writes, not the whole destination: src.numel() elements of dst's dtype.
        OpCost cost = memory_cost({&rows, &src}, nullptr);
        cost.bytes += static_cast<double>(src.numel()) * static_cast<double>(dtype_size(dst.dtype()));
        set_cost(c, cost);
      },
      [&] { SAILVL_DISPATCH(dst.device(), scatter_rows(dst, rows, src)); });
}

int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step) {
  Observer* o = observer();
  if (!o) [[likely]] {
    SAILVL_DISPATCH(logits.device(), sample(logits, p, step));
  }
  OpCall c;
  c.op = "sample";
  c.device = logits.device();
  c.add_input("logits", &logits);
  c.note = p.temperature == 0 ? "greedy" : str_cat("temperature ", p.temperature);
  set_cost(c, memory_cost({&logits}, nullptr));
  o->op_begin(c);
  const int64_t token = [&]() -> int64_t { SAILVL_DISPATCH(logits.device(), sample(logits, p, step)); }();
  c.result = token;
  o->op_end(c);
  return token;
}

}  // namespace sailvl::ops
