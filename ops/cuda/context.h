// Per-device CUDA context for the ops: one stream, one cuBLASLt handle with its workspace, the
// device properties the launchers size their grids from, and growable scratch buffers.
//
//   auto& ctx = ops::cuda::Context::get(out.device().index);
//   kernel<<<grid, block, smem, ctx.stream()>>>(...);
//
// Every CUDA op runs on ctx.stream(). The stream is created *blocking* (cudaStreamDefault flag), so
// it is ordered with the legacy default stream that Tensor copies (cudaMemcpy) use: a tensor
// copied to the device before an op, or read back after it, needs no explicit synchronisation.
// Contexts live until process exit (one per device, created on first use, never destroyed while
// ops may still run). Scratch buffers only grow, so the decode loop stops allocating after its
// first step. Not thread-safe: one host thread drives a device at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ops/ops.h"
#include "tensor/cuda/check.h"
#include "tensor/tensor.h"

namespace sailvl::ops::cuda {

// Device memory owned by RAII; grows on request (old contents are not kept).
class DeviceScratch {
 public:
  DeviceScratch() = default;
  ~DeviceScratch();
  DeviceScratch(DeviceScratch&& o) noexcept;
  DeviceScratch& operator=(DeviceScratch&& o) noexcept;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  // At least `bytes` bytes, 256-byte aligned. Synchronises the device before freeing an old buffer
  // that kernels may still read.
  void* get(size_t bytes);
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class Context {
 public:
  static Context& get(int device);
  // Destroys every device's context (stream, cuBLASLt handle, workspace, scratch, pinned word);
  // the next get() makes a fresh one. For a clean process end under compute-sanitizer's leak check.
  static void release_all();

  cudaStream_t stream() const { return stream_.get(); }
  cublasLtHandle_t lt() const { return lt_.get(); }
  void* lt_workspace() const { return lt_workspace_; }
  size_t lt_workspace_bytes() const { return kLtWorkspaceBytes; }

  int device() const { return device_; }
  int sm_count() const { return sm_count_; }
  int cc_major() const { return cc_major_; }
  size_t smem_optin() const { return smem_optin_; }  // max dynamic shared memory per block
  size_t l2_bytes() const { return l2_bytes_; }

  // Scratch buffers by purpose, so two users in one op never alias.
  enum class Slot { AttnPartial, Im2col, Sample, Bench, kCount };
  void* scratch(Slot s, size_t bytes) { return scratch_[static_cast<int>(s)].get(bytes); }

  // A pinned host word for copying one result back (the sampled token id).
  int64_t* pinned_i64() const { return pinned_; }

  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();

  static constexpr size_t kLtWorkspaceBytes = kCudaLtWorkspaceBytes;  // ops/ops.h (the memory plan counts it)

 private:
  explicit Context(int device);

  int device_ = 0;
  int sm_count_ = 0;
  int cc_major_ = 0;
  size_t smem_optin_ = 0;
  size_t l2_bytes_ = 0;
  sailvl::cuda::Stream stream_;
  sailvl::cuda::CublasLtHandle lt_;
  void* lt_workspace_ = nullptr;
  int64_t* pinned_ = nullptr;
  DeviceScratch scratch_[static_cast<int>(Slot::kCount)];
};

// ---- host-side shape helpers shared by the launchers ----

// A tensor seen as rows × cols with the last dim contiguous and the leading dims collapsible into
// one row stride (a contiguous tensor, or a narrow/select view of one along a leading dim).
struct RowView {
  void* ptr = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;  // elements
};
// Throws ErrorKind::Internal naming `op` and `what` when t cannot be seen that way.
RowView row_view(const Tensor& t, const char* op, const char* what);

// Activation dtypes of the CUDA backend.
inline bool is_act_dtype(DType t) { return t == DType::BF16 || t == DType::F32; }

// 0 for F32, 1 for BF16 (the runtime flag the kernels take for parameter vectors); throws otherwise.
int param_kind(const Tensor& t, const char* op, const char* what);

// Blocks for a grid-stride elementwise launch of n items with `threads` threads: enough to fill
// the device a few times over, never more than needed.
unsigned grid_for(int64_t n, int threads, const Context& ctx);

}  // namespace sailvl::ops::cuda
