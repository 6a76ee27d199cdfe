// Quantised linear weights: the q8 and q4 formats of docs/QUANTIZATION.md, the Weight operand of
// ops::linear, and the reference quantiser / dequantiser.
//
// A linear weight w[N, K] (N outputs, K inputs, PyTorch order) is stored either as floats (BF16/F16/
// F32, as in the checkpoint) or as integer codes in blocks of G consecutive weights along K, each
// block with one F16 scale:
//
//   q8  data I8 [N, K]    code c in [-127, 127]              w' = s · c            G = 32
//   q4  data U8 [N, K/2]  nibble u in [0, 15], c = u - 8     w' = s · (u - 8)      G = 32
//       weight k of a row is the low nibble of byte k/2 when k is even, the high nibble when odd
//   scale F16 [N, K/G]: s of the block holding weight k is scale[n, k / G]
//
// Checkpoint names: for a linear weight "X.weight" the codes are stored as "X.weight" (I8 or U8)
// and the scales as "X.weight_scale" (F16); the tensors are used in place from the mmap.
// Rounding (both formats, computed from the weights as F32):
//   q8: s = f16(max|w| / 127), c = clamp(rne(w / s), -127, 127)
//   q4: m = the weight of largest |w| in the block (the first one on a tie), s = f16(m / -8),
//       c = clamp(rne(w / s), -8, 7)                       (so m itself maps to -8 exactly)
//   f16() rounds to nearest even; rne() rounds half to even; the division is an F32 division by the
//   F16-rounded scale. A block whose F16 scale is 0 (all zero, or too small for F16) gets s = 0 and
//   every code 0 (q4: nibble 8). A scale that overflows F16 is refused (ErrorKind::BadModel).
// w' = s · c is exact in F32 (11-bit × 8-bit significands), so dequantize() is exact and every
// kernel differs from "dequantise, then an F32 dot product" only by the order of the F32 sums.
//
// The quantiser also takes other q4 group sizes and an asymmetric q4 variant
// (w' = s · u + z, u in [0, 15], z = f16(min w), s = f16((max w - z) / 15), u = clamp(rne((w - z) / s),
// 0, 15)); they exist for the format study in docs/QUANTIZATION.md and are not stored formats
// (Weight::from_stored refuses them). The CPU kernels run any group that is a multiple of 32.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace sailvl::ops {

enum class QuantType : uint8_t { None, Q8, Q4 };

const char* quant_type_name(QuantType t);                           // "none", "q8", "q4"
std::optional<QuantType> quant_type_from_name(std::string_view s);  // the inverse

inline constexpr int64_t kQ8Group = 32;  // weights per scale along K
inline constexpr int64_t kQ4Group = 32;
// The group of a stored format (0 for None).
inline constexpr int64_t quant_group(QuantType t) {
  return t == QuantType::Q8 ? kQ8Group : t == QuantType::Q4 ? kQ4Group : 0;
}
// The codes per byte of a format's data tensor: 1 (q8), 2 (q4).
inline constexpr int64_t quant_codes_per_byte(QuantType t) { return t == QuantType::Q4 ? 2 : 1; }

// Checkpoint names of the extra tensors of a quantised "X.weight".
inline std::string quant_scale_name(const std::string& weight_name) { return weight_name + "_scale"; }
inline std::string quant_zero_name(const std::string& weight_name) { return weight_name + "_zero"; }
// The inverse of quant_scale_name: "X.weight_scale" -> "X.weight"; any other name -> "".
inline std::string quant_scale_owner(const std::string& name) {
  return name.ends_with(".weight_scale") ? name.substr(0, name.size() - 6) : std::string();
}

// A linear layer's weight [N, K]: a float tensor (BF16/F16/F32, as stored) or quantised blocks.
struct Weight {
  Tensor data;   // float [N, K], or I8 [N, K] (q8), or U8 [N, K/2] (q4)
  Tensor scale;  // F16 [N, K/G] (quantised only)
  Tensor zero;   // F16 [N, K/G]: the asymmetric q4 study variant only (undefined otherwise)
  QuantType type = QuantType::None;
  int64_t group = 0;  // G (quantised only)

  Weight() = default;
  Weight(Tensor t);  // NOLINT(google-explicit-constructor): a float weight; existing call sites pass a Tensor

  // A quantised weight from the tensors of a checkpoint (the loader's entry point): checks the
  // dtypes, the shapes against each other, and the group against the stored format (G = 32,
  // symmetric: no zero tensor). `name` ("X.weight") goes into the BadModel message.
  static Weight from_stored(QuantType type, Tensor data, Tensor scale, std::string_view name);

  bool defined() const { return data.defined(); }
  bool quantized() const { return type != QuantType::None; }
  int64_t rows() const;   // N
  int64_t cols() const;   // K
  size_t nbytes() const;  // data + scale (+ zero): what a GEMV reads
  Device device() const { return data.device(); }
  std::string describe() const;  // "BF16[N, K] cpu" or "q4[N, K] g32 cpu"
};

// Options of the quantiser; the defaults produce the stored formats.
struct QuantOptions {
  int64_t group = 0;        // 0: the format's group (32); else a positive multiple of 32 (q4 study)
  bool asymmetric = false;  // q4 only: the study's asymmetric variant (w' = s·u + z)
};

// Quantise a CPU float weight [N, K] (BF16/F16/F32, any row stride, contiguous rows) into owned CPU
// tensors in exactly the stored layout. K must be a multiple of the group (else BadModel, naming
// the shape); N·K may be large (the rows are split over the OpenMP threads). The result does not
// depend on the number of threads.
Weight quantize(const Tensor& w, QuantType type, const QuantOptions& opt = {});

// The reference: w' as F32 [N, K] (a float weight is converted to F32).
Tensor dequantize(const Weight& w);

}  // namespace sailvl::ops
