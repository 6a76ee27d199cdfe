// Memory preflight: what a model and a workload need on a device, checked before any weight is
// placed there, so "out of memory" comes with a breakdown and a way out instead of a failed
// allocation half-way through loading.
//
//   Workload w{.context = 4096, .max_new_tokens = 512, .tiles = 11};
//   MemoryPlan p = plan_memory(cfg, Device::cuda(0), DType::BF16, w, weights.total_bytes());
//   check_fits(p, *free_memory(Device::cuda(0)));      // ErrorKind::OutOfMemory with every line
//
// The plan mirrors what the code allocates (a = bytes per activation element: 2 for BF16 on CUDA,
// 4 for F32 on CPU; T tiles, N = G² patches per tile, C vision width, Fv vision MLP width,
// L/D/F/H/Hkv/Dh/V the LLM's layers, width, MLP width, heads, KV heads, head dim, vocabulary):
//
//   weights     the checkpoint's tensors as stored (an upper bound of what is placed: layers after
//               select_layer are skipped; a stored lm_head is always the head and always placed)
//   KV cache    2 (K, V) · L · K_tok · Hkv · Dh · a                       model/kv_cache.h
//   vision      the image path's peak: max(tower, projector) where          model/intern_vit.cpp,
//                 tower     = a · (T·N·C + Tp·(3·S² + N·C + 7·Nv·C + MLP))  model/aimv2.cpp,
//                 projector = a · T · (3·N·C + 2·(N/4)·D)                    model/projector.cpp
//               (tower: features of all tiles + the scratch of one pass of Tp tiles: Tp = 1 on
//               CPU, min(T, 16) on CUDA; Nv = N + 1 with InternViT's CLS,
//               MLP = Nv·Fv for InternViT, 2·N·Fv for AIMv2's SwiGLU; projector: features, pixel
//               shuffle and LayerNorm output [T, N/4, 4C] each, GELU input and rows [T, N/4, D])
//   prefill     a · (P_tok · (4D + 2·H·Dh + 2F) + D) + 24 · P_tok          model/qwen2.cpp, generate.cpp
//               (workspace x, n, y [P, D], q, a [P, H·Dh], gate, up [P, F]; the prompt embeddings
//               E [P, D]; the decode input [1, D]; positions, ids and image-row indices, I64)
//   logits      4 · V                                                      F32 [V] on the device
//   workspaces  CUDA: the cuBLASLt workspace + the op scratch buffers (ops/cuda/context.h), each at
//               least 1 MiB: one pass's im2col columns (Tp · N · 3P² · 2), decode attention partials
//               (ceil(K_tok/64) splits · H · (Dh + 2) · 4) and sampling (37 B per vocabulary id:
//               ops/cuda/sample.cu's arrays + cub's sort buffers, + 1 MiB);
//               CPU: one tile's im2col columns (N · 3P² · 4) + per thread 4 MiB of GEMM panels and
//               64 query rows of attention scores (64 · (K_tok + 2·Dh) · 4)
//   margin      256 MiB on CUDA (allocator rounding to 2 MiB, driver and library growth,
//               fragmentation), 64 MiB on CPU, + 5% of the parts it is added to
//
// K_tok (KV rows) and P_tok (prefill rows) come from the workload: the context check of generate()
// allows a prompt of at most context − max_new tokens, and the cache holds prompt + max_new rows.
//
// On CUDA everything must fit in the free device memory. On CPU the weights are mmapped: they live
// in the page cache, which the kernel can drop and re-read, so only the rest is compared with
// MemAvailable.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "loader/config.h"
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
};

enum class MemPart { Weights, KvCache, Vision, Prefill, Logits, Workspaces, Margin, kCount };
const char* mem_part_name(MemPart p);  // "weights", "KV cache", ...

struct MemoryPlan {
  Device device;
  DType act = DType::F32;
  int64_t kv_tokens = 0;       // K_tok
  int64_t prefill_tokens = 0;  // P_tok
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
MemoryPlan plan_memory(const loader::ModelConfig& cfg, const Device& device, DType act, const Workload& w,
                       uint64_t weight_bytes);

// Bytes of a BF16 checkpoint of `cfg`: every tensor SAIL-VL stores (checkpoint/presets.h), 2 bytes each;
// `stored_head` as in checkpoint_tensors (default: a head is stored when the config is untied).
uint64_t bf16_checkpoint_bytes(const loader::ModelConfig& cfg, std::optional<bool> stored_head = std::nullopt);

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
