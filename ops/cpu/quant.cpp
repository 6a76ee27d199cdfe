// The reference quantiser and dequantiser of ops/quant.h (formats: docs/QUANTIZATION.md).
//
// quantize: each row of w is widened to F32 (exact for BF16/F16), then cut into blocks of G weights
// along K; each block gets its F16 scale and its codes by the rules of ops/quant.h:
//   q8          s = f16(max|w| / 127)   c = clamp(rne(w / s), -127, 127)     stored c (I8)
//   q4          s = f16(m / -8)         c = clamp(rne(w / s), -8, 7)         stored u = c + 8 (nibble)
//               m = the block's weight of largest magnitude, the first one on a tie
//   q4 asym     z = f16(min w), s = f16((max w - z) / 15), u = clamp(rne((w - z) / s), 0, 15)
// rne = std::nearbyint in the default rounding mode (to nearest, ties to even); f16 = f32_to_f16
// (to nearest even). A scale that rounds to 0 in F16 (an all-zero block, or weights below F16's
// range) stores +0 and codes 0 (q4: nibble 8; asym: u = 0, so w' = z). Non-finite weights and scales
// that overflow F16 are refused with ErrorKind::BadModel.
// Nibbles: weight k of a row is the low nibble of byte k/2 when k is even, the high one when odd.
//
// dequantize: w' = s · c (q8), s · (u - 8) (q4), fma(s, u, z) (q4 asym) in F32; s · c is exact.
//
// Parallel plan: rows over OpenMP threads (static); every row is independent, so the result does
// not depend on the thread count. A row that fails a check is remembered and reported after the
// loop (exceptions must not leave an OpenMP region).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/cpu_util.h"
#include "ops/quant.h"

namespace sailvl::ops {

namespace {

constexpr const char* kOp = "quantize";

enum class RowError : uint8_t { None, NonFinite, ScaleOverflow };

uint16_t f16_scale(float s, RowError* err) {
  const uint16_t h = f32_to_f16(s);
  if ((h & 0x7c00u) == 0x7c00u) *err = RowError::ScaleOverflow;
  return (h & 0x7fffu) == 0 ? uint16_t{0} : h;  // a zero scale is stored as +0
}

RowError quantize_row_q8(const float* w, int64_t K, int64_t G, int8_t* codes, uint16_t* scales) {
  RowError err = RowError::None;
  for (int64_t b = 0; b < K / G; ++b) {
    const float* blk = w + b * G;
    float amax = 0;
    for (int64_t k = 0; k < G; ++k) {
      if (!std::isfinite(blk[k])) return RowError::NonFinite;
      amax = std::max(amax, std::fabs(blk[k]));
    }
    const uint16_t sh = f16_scale(amax / 127.0f, &err);
    scales[b] = sh;
    const float s = f16_to_f32(sh);
    for (int64_t k = 0; k < G; ++k)
      codes[b * G + k] =
          s == 0 ? int8_t{0} : static_cast<int8_t>(std::clamp(std::nearbyint(blk[k] / s), -127.0f, 127.0f));
  }
  return err;
}

// q4 codes of one block as nibbles u in [0, 15], before packing.
RowError quantize_row_q4(const float* w, int64_t K, int64_t G, bool asym, uint8_t* packed, uint16_t* scales,
                         uint16_t* zeros) {
  RowError err = RowError::None;
  std::vector<uint8_t> u(static_cast<size_t>(G));
  for (int64_t b = 0; b < K / G; ++b) {
    const float* blk = w + b * G;
    for (int64_t k = 0; k < G; ++k)
      if (!std::isfinite(blk[k])) return RowError::NonFinite;
    if (asym) {
      float lo = blk[0], hi = blk[0];
      for (int64_t k = 1; k < G; ++k) lo = std::min(lo, blk[k]), hi = std::max(hi, blk[k]);
      const uint16_t zh = f16_scale(lo, &err);
      const float z = f16_to_f32(zh);
      const uint16_t sh = f16_scale((hi - z) / 15.0f, &err);
      const float s = f16_to_f32(sh);
      scales[b] = sh;
      zeros[b] = zh;
      for (int64_t k = 0; k < G; ++k)
        u[k] = s == 0 ? uint8_t{0} : static_cast<uint8_t>(std::clamp(std::nearbyint((blk[k] - z) / s), 0.0f, 15.0f));
    } else {
      float m = 0;  // the weight of largest magnitude; strict > keeps the first one on a tie
      for (int64_t k = 0; k < G; ++k)
        if (std::fabs(blk[k]) > std::fabs(m)) m = blk[k];
      const uint16_t sh = f16_scale(m / -8.0f, &err);
      const float s = f16_to_f32(sh);
      scales[b] = sh;
      for (int64_t k = 0; k < G; ++k)
        u[k] = s == 0 ? uint8_t{8} : static_cast<uint8_t>(std::clamp(std::nearbyint(blk[k] / s), -8.0f, 7.0f) + 8.0f);
    }
    for (int64_t k = 0; k < G; k += 2) packed[(b * G + k) / 2] = static_cast<uint8_t>(u[k] | (u[k + 1] << 4));
  }
  return err;
}

}  // namespace

Weight quantize(const Tensor& w, QuantType type, const QuantOptions& opt) {
  SAILVL_CHECK(type != QuantType::None, Internal, kOp, ": no format given");
  SAILVL_CHECK(w.defined() && w.device().is_cpu() && w.dim() == 2 && is_floating(w.dtype()), Internal, kOp,
               ": w must be a CPU [N, K] float matrix, got ", w.defined() ? w.describe() : "undefined");
  SAILVL_CHECK(w.size(1) <= 1 || w.stride(1) == 1, Internal, kOp, ": w needs contiguous rows, got ", w.describe());
  SAILVL_CHECK(!opt.asymmetric || type == QuantType::Q4, Internal, kOp, ": only q4 has an asymmetric variant");
  const int64_t G = opt.group ? opt.group : quant_group(type);
  SAILVL_CHECK(G > 0 && G % 32 == 0, Internal, kOp, ": group ", G, " is not a positive multiple of 32");
  const int64_t N = w.size(0), K = w.size(1);
  SAILVL_CHECK(K % G == 0, BadModel, kOp, ": weight ", w.describe(), " has K = ", K, " inputs, not a multiple of the ",
               quant_type_name(type), " group size ", G, "; keep this weight in its float format");

  Weight q;
  q.type = type;
  q.group = G;
  q.data = Tensor::empty({N, K / quant_codes_per_byte(type)}, type == QuantType::Q8 ? DType::I8 : DType::U8);
  q.scale = Tensor::empty({N, K / G}, DType::F16);
  if (opt.asymmetric) q.zero = Tensor::empty({N, K / G}, DType::F16);
  const auto* wb = static_cast<const uint8_t*>(w.raw_data());
  const int64_t w_row_bytes = w.stride(0) * static_cast<int64_t>(dtype_size(w.dtype()));
  auto* codes = static_cast<uint8_t*>(q.data.raw_data());
  auto* scales = q.scale.data<uint16_t>();
  auto* zeros = opt.asymmetric ? q.zero.data<uint16_t>() : nullptr;
  const int64_t code_row = K / quant_codes_per_byte(type), scale_row = K / G;

  int64_t bad_row = -1;
  RowError bad = RowError::None;
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(K));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      cpu::to_f32(row.data(), wb + n * w_row_bytes, w.dtype(), K);
      const RowError e = type == QuantType::Q8
                             ? quantize_row_q8(row.data(), K, G, reinterpret_cast<int8_t*>(codes + n * code_row),
                                               scales + n * scale_row)
                             : quantize_row_q4(row.data(), K, G, opt.asymmetric, codes + n * code_row,
                                               scales + n * scale_row, zeros ? zeros + n * scale_row : nullptr);
      if (e != RowError::None) {
#pragma omp critical(sailvl_quantize_error)
        if (bad_row < 0 || n < bad_row) bad_row = n, bad = e;
      }
    }
  }
  SAILVL_CHECK(bad != RowError::NonFinite, BadModel, kOp, ": weight ", w.describe(), " has a non-finite value in row ",
               bad_row);
  SAILVL_CHECK(bad != RowError::ScaleOverflow, BadModel, kOp, ": weight ", w.describe(), " row ", bad_row,
               " has values too large for an F16 scale (|w| > 65504 × ", type == QuantType::Q8 ? 127 : 8, ")");
  return q;
}

Tensor dequantize(const Weight& w) {
  constexpr const char* op = "dequantize";
  SAILVL_CHECK(w.defined() && w.device().is_cpu() && w.data.dim() == 2, Internal, op, ": needs a CPU 2-D weight, got ",
               w.describe());
  const int64_t N = w.rows(), K = w.cols();
  Tensor out = Tensor::empty({N, K}, DType::F32);
  if (!w.quantized()) {
    out.copy_from(w.data);
    return out;
  }
  const int64_t G = w.group;
  SAILVL_CHECK(G > 0 && K % G == 0 && w.scale.defined() && w.scale.dtype() == DType::F16 &&
                   w.scale.shape() == Shape({N, K / G}) && w.scale.is_contiguous() && w.data.is_contiguous(),
               Internal, op, ": inconsistent weight ", w.describe());
  SAILVL_CHECK(!w.zero.defined() ||
                   (w.zero.shape() == w.scale.shape() && w.zero.dtype() == DType::F16 && w.zero.is_contiguous()),
               Internal, op, ": bad zero tensor in ", w.describe());
  const auto* codes = static_cast<const uint8_t*>(w.data.raw_data());
  const auto* scales = w.scale.data<const uint16_t>();
  const auto* zeros = w.zero.defined() ? w.zero.data<const uint16_t>() : nullptr;
  float* o = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float s = f16_to_f32(scales[n * (K / G) + k / G]);
      float v;
      if (w.type == QuantType::Q8) {
        v = s * static_cast<float>(static_cast<int8_t>(codes[n * K + k]));
      } else {
        const uint8_t byte = codes[n * (K / 2) + k / 2];
        const float u = static_cast<float>(k % 2 == 0 ? byte & 0xf : byte >> 4);
        v = zeros ? std::fma(s, u, f16_to_f32(zeros[n * (K / G) + k / G])) : s * (u - 8.0f);
      }
      o[n * K + k] = v;
    }
  return out;
}

}  // namespace sailvl::ops
