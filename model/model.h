// SAIL-VL, the model: table of contents.
//
// One picture of the whole forward pass (docs/MODEL.md §4-§8; shapes for one image of T tiles):
//
//   pixels [T, 3, 448, 448]
//     │  model/intern_vit.h   InternViT-300M: conv patchify + CLS + pos, 24 × (LN→MHA, LN→MLP) with
//     │  model/aimv2.h        layer scale   — or AIMv2-Huge: conv + RMSNorm + pos, 24 × (RMSNorm→MHA,
//     ▼                       RMSNorm→SwiGLU), post_trunk_norm
//   features [T, 1024, C]
//     │  model/projector.h    pixel shuffle v2 (2×2 neighbours → channels), mlp1 = LN → Linear → GELU → Linear
//     ▼
//   image rows [T·256, D]
//     │  model/sail_vl.h      E = embed_tokens(ids); E[ids == <IMG_CONTEXT>] = image rows (in order)
//     ▼
//   E [S, D]
//     │  model/qwen2.h        Qwen2: L × (RMSNorm→GQA attention with RoPE, RMSNorm→SwiGLU), norm, lm_head
//     │  model/kv_cache.h     per layer K, V [S_max, Hkv, Dh] written by prefill and each decode step
//     ▼
//   logits [V]
//     │  runtime/generate.h     sample (ops::sample) → stream text → stop at <|im_end|>
//     │  runtime/chat.h         the card's model.chat(): template, images, history, response
//     ▼
//   text
//
//   runtime/taps.h              write every stage above as safetensors (compare with the oracle's goldens)
//
// Numerics: on CPU every activation is F32 and weights stay BF16 views into the mmap (ops/ops.h
// converts on the fly); on CUDA activations are BF16 (docs/ARCHITECTURE.md, "Numerics"). The model code is the
// same for both: it allocates with activation_dtype(device) and calls ops::*.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>

#include "tensor/cuda/upload.h"
#include "tensor/cuda_runtime.h"
#include "tensor/tensor.h"

namespace sailvl::model {

// How a caller steers a long forward pass: stop it between layers, and watch it progress.
//
//   RunControl ctl{.cancel = &flag, .progress = [](int64_t done, int64_t total) { ... }};
//   tower.forward(pixels, ctl);   // throws Error(Cancelled) at the next layer after flag is set
//
// The model checks `cancel` between layers (and between tiles or chunks), so a request stops within
// one layer's time; the caller's state stays as before the call (a KV cache keeps its length).
// `progress` receives work units done of the total (layers × passes for a tower, layers × chunks
// for a prefill); it runs on the computing thread, so it must be cheap.
struct RunControl {
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(int64_t done, int64_t total)> progress;

  bool cancelled() const { return cancel && cancel->load(std::memory_order_relaxed); }
  void check() const {
    if (cancelled()) fail(ErrorKind::Cancelled, "cancelled");
  }
  void report(int64_t done, int64_t total) const {
    if (progress) progress(done, total);
  }
};

// The dtype every activation buffer of the model has on `device`.
inline DType activation_dtype(const Device& device) { return device.is_cpu() ? DType::F32 : DType::BF16; }

// Tiles the vision towers (model/intern_vit.cpp, model/aimv2.cpp) run through each layer together:
// one on the CPU (1024-row GEMMs already fill it and the scratch stays small), all of them up to
// 16 on a GPU, where 1024 rows per GEMM would leave the chip half idle. The memory plan counts
// the scratch of one such pass.
inline int64_t vision_tiles_per_pass(int64_t tiles, const Device& device) {
  return std::min<int64_t>(tiles, device.is_cpu() ? 1 : 16);
}

// Weight bytes placed on a GPU so far while SailVL::load runs, for LoadOptions::progress (set
// by SailVL::load for the duration of the load, on the loading thread).
struct UploadMeter {
  std::function<void(uint64_t done, uint64_t total)> report;
  uint64_t done = 0, total = 0;
};
inline thread_local UploadMeter* g_upload_meter = nullptr;

// A checkpoint tensor placed where the model runs: on CPU the mmap view itself (no copy), on CUDA
// a device copy in the stored dtype, streamed from the mmap through the pinned double buffer of
// tensor/cuda/upload.h (page faults overlap the DMA).
inline Tensor place(const Tensor& w, const Device& device) {
  if (w.device() == device) return w;
  if (!device.is_cuda() || !w.device().is_cpu()) return w.to(device);
  UploadMeter* m = g_upload_meter;
  cuda::UploadProgress progress;
  const uint64_t base = m ? m->done : 0;
  if (m && m->report) progress = [m, base](size_t done, size_t) { m->report(base + done, m->total); };
  Tensor d = cuda::upload(w, progress, device);
  if (m) m->done = base + w.nbytes();
  return d;
}

// A small checkpoint tensor (embedding tables of the vision towers, layer-scale vectors) converted
// once to the activation dtype, so elementwise ops see one dtype on both operands.
inline Tensor place_as_activation(const Tensor& w, const Device& device) {
  Tensor out = Tensor::empty(w.shape(), activation_dtype(device), device);
  out.copy_from(w);
  return out;
}

// End of a stage (tensor/stage.h) on `device`: on CUDA, wait for the stage's kernels while its
// StageScope is still open, so an asynchronous kernel error is reported as this stage's and the
// stage's time is its real time. What follows a stage waits for those kernels anyway (the logits
// copy, the next stage's first copy), so this costs nothing measurable. Nothing on CPU.
inline void finish_stage(const Device& device) {
  if (device.is_cuda()) cuda::synchronize();
}

}  // namespace sailvl::model
