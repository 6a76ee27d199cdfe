// Memory preflight: what a model and a workload need on a device, checked before any weight is
// placed there, so "out of memory" comes with a breakdown and a way out instead of a failed
// allocation half-way through loading.
//
//   Workload w{.context = 4096, .max_new_tokens = 512, .tiles = 11};
//   MemoryPlan p = plan_memory(cfg, Device::cuda(0), DType::BF16, w, weights.total_bytes());
//   check_fits(p, *free_memory(Device::cuda(0)));      // ErrorKind::OutOfMemory with every line
//
// The plan mirrors what the code allocates; the formulas live where the allocations are decided:
//
//   weights     the checkpoint's tensors as stored (an upper bound of what is placed: layers after
//               select_layer are skipped; a stored lm_head is always the head and always placed)
//   KV cache    K_tok rows per sequence × sequences × model::kv_bytes_per_token   model/cost.h
//   vision      the image path's peak, model::vision_memory (the tower's features and the scratch of
//               one pass of Tp tiles — Tp = model::vision_tiles_per_pass — or the projector's
//               buffers, whichever is larger)                                  model/cost.h
//   prefill     one prefill chunk of P_tok rows, model::prefill_memory           model/cost.h
//   logits      4 · V per sequence                                              F32 on the device
//   workspaces  what the ops keep besides tensors, ops::workspace_bytes (CPU: per-thread GEMM panels
//               and attention scores + im2col; CUDA: the cuBLASLt workspace and op scratch slots)
//                                                                              ops/workspace.h
//   margin      256 MiB on CUDA (allocator rounding to 2 MiB, driver and library growth,
//               fragmentation), 64 MiB on CPU, + 5% of the parts it is added to
//
// K_tok: a prompt known up front (run) needs prompt + max_new rows; otherwise (chat, serve) a
// conversation may fill the context, so the cache is planned for all of it. P_tok: the prefill
// runs in chunks of runtime::prefill_chunk_tokens(device) rows, so min(prompt, chunk).
//
// On CUDA everything must fit in the free device memory. On CPU the weights are mmapped: they live
// in the page cache, which the kernel can drop and re-read, so only the rest is compared with
// MemAvailable.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "loader/weights.h"
#include "model/config.h"
#include "tensor/dtype.h"
#include "tensor/storage.h"

namespace sailvl::runtime {

// What one load of the model will be asked to run, at most.
struct Workload {
  int64_t context = 0;         // tokens a conversation may hold; 0 = llm max_position_embeddings
  int64_t max_new_tokens = 1;  // new tokens per answer (-n)
  int64_t prompt_tokens = 0;   // upper bound on one prompt, image tokens included; 0 = unknown
  int64_t tiles = 0;           // image tiles of one request, thumbnails included
  int64_t cpu_threads = 1;     // CPU: threads that keep their own op scratch
  int64_t sequences = 1;       // conversations held at once (the server's slots), each its own KV cache
};

// Rows one prefill call processes at most on `device` (the session engine's chunk).
int64_t prefill_chunk_tokens(const Device& device);

enum class MemPart { Weights, KvCache, Vision, Prefill, Logits, Workspaces, Margin, kCount };
const char* mem_part_name(MemPart p);  // "weights", "KV cache", ...

struct MemoryPlan {
  Device device;
  DType act = DType::F32;
  int64_t kv_tokens = 0;       // K_tok
  int64_t prefill_tokens = 0;  // P_tok
  int64_t sequences = 1;
  int64_t tiles = 0;
  std::array<uint64_t, static_cast<size_t>(MemPart::kCount)> bytes{};
  std::array<std::string, static_cast<size_t>(MemPart::kCount)> detail;  // how each number was found

  uint64_t operator[](MemPart p) const { return bytes[static_cast<size_t>(p)]; }
  bool weights_in_page_cache() const { return device.is_cpu(); }
  uint64_t total() const;   // every part
  uint64_t needed() const;  // what must fit in free memory: the total, without the weights on CPU
};

// The plan for `cfg` on `device` with activations in `act`; `weight_bytes` is the checkpoint's size
// as stored (WeightMap::total_bytes(), or bf16_checkpoint_bytes(cfg) before a checkpoint exists).
MemoryPlan plan_memory(const model::ModelConfig& cfg, const Device& device, DType act, const Workload& w,
                       uint64_t weight_bytes);

// Bytes of a BF16 checkpoint of `cfg`: every tensor SAIL-VL stores (model::checkpoint_tensors), 2 bytes
// each; `stored_head` as in checkpoint_tensors (default: a head is stored when the config is untied).
uint64_t bf16_checkpoint_bytes(const model::ModelConfig& cfg, std::optional<bool> stored_head = std::nullopt);

// SailVL::load's before_weights hook (model/sail_vl.h) for this workload: plans the memory of the
// model about to be placed and throws ErrorKind::OutOfMemory with the breakdown when it does not fit
// the free memory of `device` (or `assumed_free` bytes when given, e.g. SAILVL_FAKE_FREE_BYTES).
std::function<void(const model::ModelConfig&, const loader::WeightMap&)> preflight(
    const Device& device, const Workload& w, std::optional<uint64_t> assumed_free = std::nullopt);

// Free memory where the model will run: cudaMemGetInfo's free bytes on CUDA, MemAvailable from
// /proc/meminfo on CPU (nullopt when the kernel does not report it: no check then).
std::optional<uint64_t> free_memory(const Device& device);
// MemAvailable of a /proc/meminfo text, in bytes; nullopt when absent or malformed.
std::optional<uint64_t> parse_mem_available(std::string_view meminfo);

// Throws ErrorKind::OutOfMemory when plan.needed() > free_bytes, printing every part, the total,
// the free memory and what to change. `source` says where free_bytes came from (empty: the
// device's own report, cudaMemGetInfo or MemAvailable).
void check_fits(const MemoryPlan& plan, uint64_t free_bytes, std::string_view source = {});

// The breakdown as lines ("  KV cache   896.0 MiB  2 (K, V) x ..."), the total and, when given,
// the free memory (`source` as in check_fits).
std::string format_plan(const MemoryPlan& plan, std::optional<uint64_t> free_bytes, std::string_view source = {});
// 1536 -> "1.5 KiB", 939524096 -> "896.0 MiB" (binary units).
std::string format_bytes(uint64_t bytes);

}  // namespace sailvl::runtime
