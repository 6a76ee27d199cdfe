// Random-weight checkpoints in SAIL-VL's exact on-disk format (`sailvl make-model`).
//
// A preset is a config.json (the real keys of SAIL-VL's configs, docs/MODEL.md §1-§2) from which the
// canonical tensor list follows (model::checkpoint_tensors, model/family.h: real HF names and shapes, in state_dict order:
// vision_model, language_model, mlp1). Values come from the counter-based PRNG of
// docs/CHECKPOINTS.md (checkpoint/prng.h), so the oracle reproduces them from the names alone.
//
// Sharding: with N shards, tensor k of the K in canonical order goes to shard floor(k * N / K)
// (equal tensor counts, contiguous runs). For tiny-aimv2 (N = 3) both boundaries fall inside an LLM
// layer, so "a layer split across shards" is always exercised. Shard files are named as
// transformers names them: model-00001-of-00003.safetensors; N = 1 writes model.safetensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/family.h"
#include "tensor/tensor.h"

namespace sailvl::checkpoint {

// tiny-internvit, tiny-aimv2, sailvl-2b, sailvl-8b, sailvl-1d5-2b, sailvl-1d5-8b, sailvl-1d6-8b.
const std::vector<std::string>& preset_names();

// The config.json of a preset; `tie` overrides llm_config.tie_word_embeddings. Throws Usage on an
// unknown preset name.
nlohmann::ordered_json preset_config(const std::string& preset, std::optional<bool> tie = std::nullopt);
int default_shards(const std::string& preset);
// Whether a preset's checkpoint stores language_model.lm_head.weight (with `tie` as make-model's
// --tie/--untie would set it).
bool default_stored_head(const std::string& preset, std::optional<bool> tie = std::nullopt);

// shard index of each of `count` tensors for `shards` shards (the rule above).
std::vector<int> assign_shards(size_t count, int shards);

// Fill `out` (n values) with elements [first, first + n) of tensor `name` (BF16 bits).
void generate_bf16(const std::string& name, const Shape& shape, uint64_t seed, uint64_t first, uint64_t n,
                   uint16_t* out);

struct MakeModelOptions {
  std::string preset;
  std::string out_dir;
  uint64_t seed = 0;
  int shards = 0;                   // 0: the preset's default
  std::optional<bool> tie;          // nullopt: the preset's default
  std::optional<bool> stored_head;  // store lm_head.weight; nullopt: default_stored_head(preset, tie)
  bool quiet = false;               // progress on stderr unless quiet
  bool force = false;               // write into a non-empty directory
};

struct MakeModelResult {
  int64_t params = 0;
  uint64_t bytes = 0;
  std::vector<std::string> files;  // safetensors files written
};

// Writes config.json, the tokenizer files, the safetensors file(s), when sharded the index, and a
// RANDOM_WEIGHTS note (run/chat/inspect warn when they see it). Refuses a non-empty directory unless
// opt.force.
// Streams: memory use is one chunk of one tensor, whatever the model size.
MakeModelResult make_model(const MakeModelOptions& opt);

}  // namespace sailvl::checkpoint
