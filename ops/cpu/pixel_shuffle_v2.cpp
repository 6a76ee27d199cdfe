// Pixel shuffle, ps_version "v2" (docs/MODEL.md §6): merge each 2×2 block of the G×G patch grid
// into one token with 4C channels.
//   out[t, i*(G/2) + j, (2*dy + dx)*C + c] = in[t, (2i+dy)*G + (2j+dx), c],   i, j < G/2; dy, dx ∈ {0,1}
// (v1 would instead emit the merged grid transposed, token j*(G/2) + i; SAIL-VL uses v2.)
// It is a pure gather of contiguous C-float rows: 4 memcpy per output token.
// Parallel plan: output tokens (t, i, j) split across OpenMP threads.
// Preconditions: in [T, G*G, C] with G even, out [T, G*G/4, 4C], same dtype, both contiguous.
#include <cmath>
#include <cstring>

#include "ops/cpu/cpu_ops.h"
#include "ops/cpu/cpu_util.h"

namespace sailvl::ops::cpu {

void pixel_shuffle_v2(const Tensor& out, const Tensor& in) {
  constexpr const char* op = "pixel_shuffle_v2";
  SAILVL_OP_CHECK(in.dim() == 3 && out.dim() == 3, op, "expected 3-D tensors, got ", out.describe(), " and ",
                  in.describe());
  SAILVL_OP_CHECK(in.dtype() == out.dtype(), op, "dtype mismatch ", out.describe(), " vs ", in.describe());
  SAILVL_OP_CHECK(in.is_contiguous() && out.is_contiguous(), op, "tensors must be contiguous");
  const int64_t T = in.size(0), N = in.size(1), C = in.size(2);
  const int64_t G = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(N))));
  SAILVL_OP_CHECK(G * G == N && G % 2 == 0, op, "token count ", N, " is not an even square grid");
  const int64_t Gh = G / 2;
  SAILVL_OP_CHECK(out.size(0) == T && out.size(1) == Gh * Gh && out.size(2) == 4 * C, op, "out must be [", T, ", ",
                  Gh * Gh, ", ", 4 * C, "], got ", out.describe());
  const size_t es = dtype_size(in.dtype());
  const size_t row_bytes = static_cast<size_t>(C) * es;
  const auto* src = static_cast<const uint8_t*>(in.raw_data());
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  const int64_t n_out = T * Gh * Gh;
#pragma omp parallel for schedule(static) if (n_out * C > 65536)
  for (int64_t o = 0; o < n_out; ++o) {
    const int64_t t = o / (Gh * Gh), i = (o / Gh) % Gh, j = o % Gh;
    for (int64_t dy = 0; dy < 2; ++dy)
      for (int64_t dx = 0; dx < 2; ++dx) {
        const int64_t src_tok = t * N + (2 * i + dy) * G + (2 * j + dx);
        std::memcpy(dst + (o * 4 + 2 * dy + dx) * row_bytes, src + src_tok * row_bytes, row_bytes);
      }
  }
}

}  // namespace sailvl::ops::cpu
