// Per-stage taps: every intermediate of one generation written as safetensors, so that a mismatch
// with the oracle (tools/reference) names the stage where it starts.
//
// One file per stage, <dir>/<stage>.safetensors, holding one tensor named <stage>:
//   pixel_values   [T, 3, S, S]     the tiles fed to the vision tower (as given)
//   vision         [T, G², C]       vision tower output (select_layer, CLS dropped for InternViT)
//   pixel_shuffle  [T, G²/4, 4C]
//   projector      [T, G²/4, D]     mlp1 output = the rows scattered into the prompt
//   prompt_ids     [S] I64
//   logits         [V] F32          prefill logits at the last prompt position
//   layer_{l}      [S, D]           output of decoder layer l over the prompt (only when asked)
// Tensors are written in their compute dtype (F32 on CPU).
#pragma once

#include <span>
#include <string>

#include "tensor/tensor.h"

namespace sailvl::runtime {

class Taps {
 public:
  // Creates `dir` if needed. `layers`: also write every decoder layer's output (big: S×D each).
  explicit Taps(std::string dir, bool layers = false);

  bool layers() const { return layers_; }
  const std::string& dir() const { return dir_; }

  void write(const std::string& stage, const Tensor& t) const;  // <dir>/<stage>.safetensors
  void write_ids(const std::string& stage, std::span<const int64_t> ids) const;

 private:
  std::string dir_;
  bool layers_ = false;
};

}  // namespace sailvl::runtime
