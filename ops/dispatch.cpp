// The one place where ops choose a backend: by the device of their output (ops/ops.h).
// Shared preconditions (same device for every operand) are checked here; each backend checks
// its own shapes and dtypes.
#include <omp.h>

#include "ops/cpu/cpu_ops.h"
#include "ops/ops.h"
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
  if (w.quantized()) return cpu::linear(out, x, w, bias);
  SAILVL_DISPATCH(out.device(), linear(out, x, w.data, bias));
}

void layer_norm(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  same_device(out.device(), {&x, &w, &b}, "layer_norm");
  SAILVL_DISPATCH(out.device(), layer_norm(out, x, w, b, eps));
}

void rms_norm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
  same_device(out.device(), {&x, &w}, "rms_norm");
  SAILVL_DISPATCH(out.device(), rms_norm(out, x, w, eps));
}

void rope(const Tensor& x, const Tensor& positions, double theta) {
  same_device(x.device(), {&positions}, "rope");
  SAILVL_DISPATCH(x.device(), rope(x, positions, theta));
}

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  same_device(out.device(), {&q, &k, &v}, "attention");
  SAILVL_DISPATCH(out.device(), attention(out, q, k, v, p));
}

void gelu_erf(const Tensor& out, const Tensor& x) {
  same_device(out.device(), {&x}, "gelu_erf");
  SAILVL_DISPATCH(out.device(), gelu_erf(out, x));
}

void silu_mul(const Tensor& out, const Tensor& gate, const Tensor& up) {
  same_device(out.device(), {&gate, &up}, "silu_mul");
  SAILVL_DISPATCH(out.device(), silu_mul(out, gate, up));
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  same_device(out.device(), {&a, &b}, "add");
  SAILVL_DISPATCH(out.device(), add(out, a, b));
}

void add_scaled(const Tensor& out, const Tensor& a, const Tensor& s, const Tensor& b) {
  same_device(out.device(), {&a, &s, &b}, "add_scaled");
  SAILVL_DISPATCH(out.device(), add_scaled(out, a, s, b));
}

void patch_embed(const Tensor& out, const Tensor& pixels, const Tensor& w, const Tensor& b) {
  same_device(out.device(), {&pixels, &w, &b}, "patch_embed");
  SAILVL_DISPATCH(out.device(), patch_embed(out, pixels, w, b));
}

void pixel_shuffle_v2(const Tensor& out, const Tensor& in) {
  same_device(out.device(), {&in}, "pixel_shuffle_v2");
  SAILVL_DISPATCH(out.device(), pixel_shuffle_v2(out, in));
}

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
  same_device(out.device(), {&ids, &table}, "embedding");
  SAILVL_DISPATCH(out.device(), embedding(out, ids, table));
}

void scatter_rows(const Tensor& dst, const Tensor& rows, const Tensor& src) {
  same_device(dst.device(), {&rows, &src}, "scatter_rows");
  SAILVL_DISPATCH(dst.device(), scatter_rows(dst, rows, src));
}

int64_t sample(const Tensor& logits, const SamplingParams& p, uint64_t step) {
  SAILVL_DISPATCH(logits.device(), sample(logits, p, step));
}

}  // namespace sailvl::ops
