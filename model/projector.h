// The vision-language projector (docs/MODEL.md §6): pixel shuffle, then mlp1.
//
// Source: InternVLChatModel.pixel_shuffle and .mlp1 (SAIL-VL keeps InternVL's projector).
//
//   s = pixel_shuffle(feature)            [T, G²/4, 4C]   each 2×2 patch neighbourhood -> one token
//   z = LayerNorm(s)                      [T, 256, 4C]    mlp1.0, eps 1e-5, affine
//   z = GELU(z·W1ᵀ + b1)                  [T, 256, D]     mlp1.1, GELU in its erf form (mlp1.2)
//   z = z·W3ᵀ + b3                        [T, 256, D]     mlp1.3
//
// ps_version "v2" (every SAIL-VL config) is the layout in ops::pixel_shuffle_v2:
//   out[t, i·G/2 + j, (2dy + dx)·C + c] = in[t, (2i+dy)·G + (2j+dx), c];
// "v1" (the class default when the key is missing) leaves the merged 16×16 grid transposed, token
// index j·G/2 + i; we produce it as v2 followed by that transpose. Tiles are independent: the MLP
// runs on all T·256 rows at once.
#pragma once

#include <cstdint>
#include <string>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "tensor/tensor.h"

namespace sailvl::model {

class Projector {
 public:
  // C: vision channels, D: LLM hidden size (both from the config, checked against mlp1's shapes).
  static Projector load(const loader::WeightMap& weights, const model::ModelConfig& cfg, const Device& device);

  // features [T, G², C] -> [T, G²/4, D]. If `shuffled` is given, it receives the pixel-shuffle
  // output [T, G²/4, 4C] (a tap for tests).
  Tensor forward(const Tensor& features, Tensor* shuffled = nullptr) const;

  // Just the pixel shuffle (v1 or v2 as configured): [T, G², C] -> [T, G²/4, 4C].
  Tensor pixel_shuffle(const Tensor& features) const;

 private:
  Device device_;
  int64_t C_ = 0, D_ = 0;
  bool v1_ = false;
  float ln_eps_ = 1e-5f;
  Tensor ln_w, ln_b;  // mlp1.0.{weight,bias}  [4C]
  ops::Weight w1;     // mlp1.1.weight         [D, 4C]
  Tensor b1;          // mlp1.1.bias           [D]
  ops::Weight w3;     // mlp1.3.weight         [D, D]
  Tensor b3;          // mlp1.3.bias           [D]
};

// mlp1's tensors in state_dict order (docs/MODEL.md §9): LayerNorm(4C), Linear(4C, D), Linear(D, D).
void projector_tensors(const ModelConfig& c, std::vector<TensorSpec>& out);
// Its linears per row (for the cost model): 4C -> D, D -> D.
std::vector<LinearShape> projector_linears(const ModelConfig& c);

}  // namespace sailvl::model
