// The one cost model: parameters, FLOPs, bytes per decoded token and activation memory of a SAIL-VL
// model, from its config (and the checkpoint's real tensor sizes when given), for every family alike
// through the families' shapes (model/family.h). runtime/memory_plan.h (the preflight of run, chat
// and serve), `sailvl inspect`, `sailvl bench` and `--profile` all read their numbers here.
//
// FLOPs count 2 per multiply-add: every linear (x[rows, in] · Wᵀ[in, out]: 2·rows·in·out), the patch
// convolution as the GEMM it is, and attention's two products (q·kᵀ and p·v: 4·Dh per visible
// (query, key) pair and head). Norms, activations and softmax are left out (a few % at most).
#pragma once

#include <cstdint>
#include <string>

#include "loader/weights.h"
#include "model/config.h"
#include "model/family.h"
#include "tensor/dtype.h"

namespace sailvl::model {

// ---- parameters ----

struct ParamCounts {
  int64_t vision = 0, projector = 0, llm = 0, other = 0;
  int64_t embed_tokens = 0;  // part of llm
  int64_t lm_head = 0;       // part of llm; 0 when the head is embed_tokens
  int64_t total() const { return vision + projector + llm + other; }
};
// From the tensors a checkpoint stores, by name: vision_model.*, mlp1.*, language_model.*.
ParamCounts count_parameters(const loader::WeightMap& w);
ParamCounts count_parameters(const std::vector<TensorSpec>& tensors);

// ---- FLOPs ----

double vision_flops_per_tile(const ModelConfig& c);     // patch conv + the layers that run
double projector_flops_per_tile(const ModelConfig& c);  // mlp1 on the tile's image rows
// A prefill of `tokens` rows after `past` cached ones, with the LM head on `logit_rows` rows.
double prefill_flops(const ModelConfig& c, int64_t tokens, int64_t past = 0, int64_t logit_rows = 1);
double decode_flops(const ModelConfig& c, int64_t context);  // one token attending `context` keys

// ---- bytes ----

// Bytes of weights one decode step reads: every decoder layer, the final norm, the LM head (the
// whole embed_tokens when it is the head) and one embedding row. From the checkpoint's tensors as
// stored when `w` is given (so a quantized checkpoint counts its real bytes), else BF16 from the
// config (with a stored head as the config implies).
uint64_t decode_weight_bytes(const ModelConfig& c, const loader::WeightMap* w = nullptr);
// K and V of one token in every layer: 2 · L · Hkv · Dh · sizeof(act).
uint64_t kv_bytes_per_token(const ModelConfig& c, DType act);

// ---- activation memory (what model/*.cpp allocate) ----

struct VisionMemory {
  uint64_t tower = 0;      // features of all tiles + one pass's scratch
  uint64_t projector = 0;  // features, pixel shuffle, LayerNorm output, GELU input, rows
  uint64_t peak() const { return tower > projector ? tower : projector; }
};
// T tiles run `per_pass` at a time with activations of `act_bytes` bytes per element:
//   tower     = a · (T·N·C + Tp·(3·S² + N·C + rows·scratch_per_row))   rows = tokens per tile
//   projector = a · T · (3·N·C + 2·(N/4)·D)
VisionMemory vision_memory(const ModelConfig& c, int64_t tiles, int64_t per_pass, uint64_t act_bytes);
// A prefill chunk of `rows` rows: the LLM workspace (x, n, q, k, v, a, y, gate, up) and the chunk's
// embeddings, a · rows · (scratch_per_row + D), the decode input a · D, and per row its position
// (device and host) and id, 24 B.
uint64_t prefill_memory(const ModelConfig& c, int64_t rows, uint64_t act_bytes);

}  // namespace sailvl::model
