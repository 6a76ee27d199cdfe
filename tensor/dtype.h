// Element types and the scalar conversions between them.
//
// BF16 is the top half of an IEEE float32; F16 is IEEE binary16. Both conversions from F32 round
// to nearest, ties to even (as torch's `.to(bfloat16)` / `.half()` do), keep ±0, Inf, and NaN
// (a NaN stays a quiet NaN; it never rounds into Inf), and F16 handles subnormals exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace sailvl {

// I8 holds the codes of q8 weights (ops/quant.h, docs/QUANTIZATION.md); it is last so the values of the
// others do not move.
enum class DType : uint8_t { F32, BF16, F16, I32, I64, U8, BOOL, I8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // the safetensors spelling: "F32", "BF16", ...
std::optional<DType> dtype_from_name(std::string_view s);
inline bool is_floating(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace sailvl
