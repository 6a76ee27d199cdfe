// A checkpoint directory's weights by Hugging Face name, bound with shape and dtype checks.
//
//   auto w = WeightMap::open("/path/to/SAIL-VL-1d5-2B");       // model.safetensors or sharded
//   auto L = w.scope("language_model.model.layers.3");
//   Tensor q = L.require("self_attn.q_proj.weight", {H * Dh, D});   // BF16 view into the mmap
//   std::optional<Tensor> head = w.scope("language_model").optional("lm_head.weight", {V, D});
//
// Sharded checkpoints resolve each tensor through model.safetensors.index.json's weight_map and
// enforce its rules (basename-only shard names, missing shards listed, tensor in the wrong shard,
// tensor in two shards). Errors are ErrorKind::BadModel and name the file and tensor.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/safetensors.h"

namespace sailvl::loader {

class WeightScope;

// model.safetensors.index.json, parsed and checked without touching the file system (the fuzzer
// feeds it bytes): a JSON object with a "weight_map" object of tensor -> shard basename.
struct ShardIndex {
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::vector<std::string> shards;                // distinct shard names, in order of appearance
};
ShardIndex parse_shard_index(std::string_view json_text, const std::string& display_name);

class WeightMap {
 public:
  static WeightMap open(const std::string& dir);

  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws BadModel naming the tensor
  Tensor get(const std::string& name) const;              // view (no copy on CPU)
  std::vector<std::string> names() const;                 // sorted
  WeightScope scope(const std::string& prefix) const;

  const std::string& dir() const { return dir_; }
  const std::vector<std::shared_ptr<SafetensorsFile>>& shards() const { return shards_; }
  uint64_t total_bytes() const;  // sum of tensor bytes
  // Read every shard once, sequentially, so the page cache holds the checkpoint before the first
  // forward pass faults it in at random (a cold disk reads ~10× faster this way); `progress` gets
  // bytes read / total. The mappings stay read-only and shareable: this costs no private memory.
  void prefetch(const std::function<void(uint64_t done, uint64_t total)>& progress = {}) const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (shard, tensor position)
};

class WeightScope {
 public:
  WeightScope(const WeightMap* map, std::string prefix) : map_(map), prefix_(std::move(prefix)) {}
  WeightScope scope(const std::string& sub) const;
  std::string full_name(const std::string& name) const;

  // Present, floating (F32/BF16/F16), exactly `shape`. Returns a view.
  Tensor require(const std::string& name, const Shape& shape) const;
  // Same, but the dtype must be exactly `dtype`.
  Tensor require(const std::string& name, const Shape& shape, DType dtype) const;
  // Absent -> nullopt; present -> checked as require().
  std::optional<Tensor> optional(const std::string& name, const Shape& shape) const;
  bool contains(const std::string& name) const;
  // Unchecked access for bindings that check dtype and shape themselves (quantised linears,
  // model/linear_weight.cpp): the header entry and the view. Absent -> BadModel naming the tensor.
  const TensorInfo& info(const std::string& name) const { return map_->info(full_name(name)); }
  Tensor get(const std::string& name) const { return map_->get(full_name(name)); }
  const std::string& dir() const { return map_->dir(); }

 private:
  const WeightMap* map_;
  std::string prefix_;
};

}  // namespace sailvl::loader
