// The counter-based PRNG of random-weight checkpoints: (tensor name, element index) -> value.
//
// Specified exactly in docs/CHECKPOINTS.md (the oracle in tools/reference reproduces it bit for bit):
//   mix(z)          splitmix64's finaliser
//   fnv1a64(bytes)  FNV-1a, 64 bit
//   base(name, s)   = fnv1a64(utf8(name)) ^ mix(s * GOLDEN)
//   u(name, i)      = (mix(base + (i + 1) * GOLDEN) >> 40) / 2^24      in [0, 1), 24 bits
//   r               = 2u - 1                                           in [-1, 1), exact
//   value           = bf16_rne(f32_rne(offset + scale * r))            (the sum exact in float64)
// There is no state, so any element can be produced alone and chunks can be made in parallel.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "tensor/dtype.h"
#include "tensor/tensor.h"

namespace sailvl::prng {

inline constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline constexpr uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline constexpr uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : bytes) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return h;
}

inline constexpr uint64_t base(std::string_view name, uint64_t seed) { return fnv1a64(name) ^ mix(seed * kGolden); }

// r(name, i) in [-1, 1): a multiple of 2^-23.
inline double uniform_pm1(uint64_t base_value, uint64_t i) {
  const uint64_t bits = mix(base_value + (i + 1) * kGolden) >> 40;  // 24 bits
  const double u = static_cast<double>(bits) / 16777216.0;          // / 2^24, exact
  return 2.0 * u - 1.0;                                             // exact
}

// The stored BF16 bits of one element.
inline uint16_t value_bf16(uint64_t base_value, uint64_t i, float offset, float scale) {
  const double r = uniform_pm1(base_value, i);
  const double prod = static_cast<double>(scale) * r;     // exact: 24-bit x 24-bit mantissas
  const double sum = static_cast<double>(offset) + prod;  // exact for the presets (CHECKPOINTS.md)
  return f32_to_bf16(static_cast<float>(sum));            // f32 RNE, then bf16 RNE
}

// The (offset, scale) of a tensor by its name and shape (the table of CHECKPOINTS.md; first match wins).
struct Init {
  float offset = 0;
  float scale = 0;
};

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

inline Init init_for(std::string_view name, const Shape& shape) {
  if (ends_with(name, "embed_tokens.weight") || ends_with(name, "lm_head.weight")) return {0.0f, 0.1f};
  const bool one_d = shape.size() == 1;
  // `*norm*.weight` (norm1, norm_2, patchifier.norm, post_trunk_norm, input_layernorm, ...) and mlp1.0.weight.
  if (one_d && ends_with(name, ".weight") && (name.find("norm") != std::string_view::npos || name == "mlp1.0.weight"))
    return {1.0f, 0.1f};
  if (one_d && ends_with(name, ".bias")) return {0.0f, 0.02f};
  if (ends_with(name, ".ls1") || ends_with(name, ".ls2")) return {0.5f, 0.1f};
  if (ends_with(name, "class_embedding") || ends_with(name, "position_embedding") || ends_with(name, "pos_embed"))
    return {0.0f, 0.1f};
  double fan_in = 1;
  for (size_t d = 1; d < shape.size(); ++d) fan_in *= static_cast<double>(shape[d]);
  return {0.0f, static_cast<float>(1.0 / std::sqrt(fan_in))};
}

}  // namespace sailvl::prng
