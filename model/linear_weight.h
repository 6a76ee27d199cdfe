// Binding a linear layer's weight from a checkpoint: the float tensor of a full-precision
// checkpoint, or the q8/q4 codes and their scales of one written by `sailvl quantize`
// (docs/QUANTIZATION.md), used in place from the mmap either way.
#pragma once

#include <string>

#include "loader/weights.h"
#include "ops/quant.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// "X.weight" as the [N, K] weight of a linear layer, placed on `device`.
//   float (BF16/F16/F32) [N, K]        -> a float Weight (the only kind a CUDA device takes today)
//   I8 [N, K] + F16 X.weight_scale     -> q8
//   U8 [N, K/2] + F16 X.weight_scale   -> q4
// `format` is what config.json's quantization_config allows for this part of the model
// (ModelConfig::llm_quant / vision_quant): codes of any other format are refused, and so is a
// quantised weight on a non-CPU device. Errors: ErrorKind::BadModel naming the tensor.
ops::Weight linear_weight(const loader::WeightScope& W, const std::string& name, int64_t N, int64_t K,
                          ops::QuantType format, const Device& device);

}  // namespace sailvl::model
