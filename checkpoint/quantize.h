// `sailvl quantize`: a full-precision SAIL-VL checkpoint -> the same checkpoint with its linear
// weights stored as q8 or q4 blocks (formats: docs/QUANTIZATION.md, ops/quant.h).
//
// What is quantised: every linear weight of the language model (the family tables' TensorSpec::
// linear: q/k/v/o, gate/up/down, and the LM head) and, with `vision`, those of the vision tower and
// the projector. Embeddings, norms, biases, layer scales and the patch embedding stay as stored. A
// tied head (no language_model.lm_head.weight; 1.5B models) gets a quantised copy of embed_tokens
// stored as the head, since decode reads the head in full every token (the embedding itself stays
// BF16: it is read one row per token). A linear whose K is not a multiple of the group stays float.
//
// The output directory is an ordinary SAIL-VL checkpoint: the input's shard files under the same
// names (the index rewritten when sharded), config.json with a "quantization_config" block, and
// every other top-level file of the input (tokenizer files, generation_config.json, ...) copied.
// Streaming: one tensor at a time, read through the mmap and released after use, so peak memory is
// about the largest tensor's output, not the checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ops/quant.h"

namespace sailvl::checkpoint {

struct QuantizeOptions {
  std::string in_dir, out_dir;
  ops::QuantType type = ops::QuantType::Q8;
  bool vision = false;  // quantise the vision tower and projector linears too
  bool force = false;   // write into a non-empty output directory
  // Input bytes processed / total, and the shard being written.
  std::function<void(uint64_t done, uint64_t total, const std::string& file)> progress;
};

struct QuantizeResult {
  uint64_t in_bytes = 0, out_bytes = 0;   // tensor data, both sides
  int64_t quantized = 0, kept = 0;        // tensors quantised / copied as stored
  bool head_added = false;                // a quantised copy of embed_tokens became lm_head.weight
  std::vector<std::string> kept_linears;  // linears left float (K not a multiple of the group)
  std::vector<std::string> files;         // safetensors files written
};

// Errors: Usage (output exists and is not empty without force; output is the input), BadModel
// (input already quantised, not a SAIL-VL checkpoint, a weight the quantiser refuses: non-finite
// values, a scale that overflows F16).
QuantizeResult quantize_checkpoint(const QuantizeOptions& opt);

}  // namespace sailvl::checkpoint
