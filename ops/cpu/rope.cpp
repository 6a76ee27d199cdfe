// Rotary position embedding, in place, Hugging Face Qwen2 flavour (non-interleaved halves).
//
// Math (transformers' Qwen2RotaryEmbedding + apply_rotary_pos_emb), with half = Dh/2, i < half:
//   inv_freq[i] = 1 / theta^(float(2i) / Dh)        all in float32 (torch: float32 pow, then 1/x)
//   f_i         = float(pos) · inv_freq[i]           float32 product
//   c_i = cos(f_i), s_i = sin(f_i)                   rounded to float32 (the activation dtype on CPU)
//   out[d]        = x[d]·c_d - x[d+half]·s_d         d < half   (rotate_half gives -x[d+half])
//   out[d+half]   = x[d+half]·c_d + x[d]·s_d
// emb = cat(freqs, freqs) makes cos/sin of column d and d+half equal, which is why one angle serves
// the pair. cos/sin are evaluated in double and rounded once (torch's float32 cos is within 1 ulp).
// Parallel plan: tokens split across OpenMP threads; each token computes its half table of cos/sin
// once and applies it to all H heads.
// Preconditions: x F32 [T, H, Dh], Dh even, last dim contiguous (dims 0 and 1 may be strided, e.g.
// a slice of a fused QKV output); positions I64 or I32 [T].
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void rope(const Tensor& x, const Tensor& positions, double theta) {
  constexpr const char* op = "rope";
  check_dtype(x, DType::F32, op, "x");
  SAILVL_OP_CHECK(x.device().is_cpu() && x.dim() == 3, op, "x must be CPU [T, H, Dh], got ", x.describe());
  const int64_t T = x.size(0), H = x.size(1), Dh = x.size(2);
  SAILVL_OP_CHECK(Dh % 2 == 0 && Dh > 0, op, "head dim must be even, got ", x.describe());
  SAILVL_OP_CHECK(x.stride(2) == 1, op, "x needs a contiguous last dim: ", x.describe());
  SAILVL_OP_CHECK(positions.device().is_cpu() && positions.dim() == 1 && positions.size(0) == T &&
                      (positions.dtype() == DType::I64 || positions.dtype() == DType::I32),
                  op, "positions must be I64/I32 [", T, "], got ", positions.describe());
  SAILVL_OP_CHECK(theta > 0, op, "theta must be positive, got ", theta);
  const int64_t half = Dh / 2;
  const int64_t s0 = x.stride(0), s1 = x.stride(1), ps = positions.stride(0);
  float* base = x.data<float>();

  std::vector<float> inv_freq(static_cast<size_t>(half));
  const float theta_f = static_cast<float>(theta);
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(Dh);
    inv_freq[i] = 1.0f / std::pow(theta_f, expo);
  }

#pragma omp parallel if (T > 1)
  {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos =
          positions.dtype() == DType::I64 ? positions.data<int64_t>()[t * ps] : positions.data<int32_t>()[t * ps];
      const float pf = static_cast<float>(pos);
      for (int64_t i = 0; i < half; ++i) {
        const float f = pf * inv_freq[i];
        cs[i] = static_cast<float>(std::cos(static_cast<double>(f)));
        sn[i] = static_cast<float>(std::sin(static_cast<double>(f)));
      }
      for (int64_t h = 0; h < H; ++h) {
        float* v = base + t * s0 + h * s1;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          const float ac = a * cs[i], bs = b * sn[i], bc = b * cs[i], as = a * sn[i];
          v[i] = ac - bs;
          v[i + half] = bc + as;
        }
      }
    }
  }
}

}  // namespace sailvl::ops::cpu
