// The key/value cache of the language model, one per conversation (or server slot).
//
// Layout (one pair of buffers per layer, contiguous, activation dtype: F32 on CPU, BF16 on CUDA):
//
//   K[l], V[l] : [S_max, Hkv, Dh]     row s = key (after RoPE) / value of the token at position s
//
// Positions are absolute: row s is written exactly once, by the forward chunk that covers s, and
// rows [0, length) are valid. Attention for a chunk at positions [p, p+T) reads the prefix view
// K[l].narrow(0, 0, p+T) — no copy, no reshuffle — with a causal mask offset by p.
// Size: 2 · L · S_max · Hkv · Dh · sizeof(act). Qwen2.5-1.5B (L 28, Hkv 2, Dh 128) in F32 is
// 56 KiB per token; 7B (Hkv 4) 112 KiB per token. A conversation's cache starts small and grows
// (reserve: new buffers, the valid rows copied, outside any forward pass) up to its context, so
// memory follows what the conversation holds; the memory plan reserves the whole context.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace sailvl::model {

class KvCache {
 public:
  KvCache() = default;
  KvCache(int64_t layers, int64_t max_seq, int64_t kv_heads, int64_t head_dim, DType dtype, const Device& device);

  const Tensor& k(int64_t layer) const { return k_.at(static_cast<size_t>(layer)); }  // [S_max, Hkv, Dh]
  const Tensor& v(int64_t layer) const { return v_.at(static_cast<size_t>(layer)); }  // [S_max, Hkv, Dh]

  int64_t capacity() const { return capacity_; }  // S_max
  int64_t length() const { return length_; }      // valid rows
  void set_length(int64_t n);                     // after a forward chunk; 0 <= n <= capacity
  void clear() { length_ = 0; }
  // Capacity for at least `rows` rows: reallocates and copies the valid rows when it must grow.
  void reserve(int64_t rows);
  size_t nbytes() const;

 private:
  std::vector<Tensor> k_, v_;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace sailvl::model
