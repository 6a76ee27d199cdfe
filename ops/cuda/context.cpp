// Per-device CUDA context (see context.h) and the host-side shape helpers of the launchers.
#include "ops/cuda/context.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>

#include "tensor/cuda_runtime.h"

namespace sailvl::ops::cuda {

DeviceScratch::~DeviceScratch() {
  if (ptr_) cudaFree(ptr_);  // destructor: no throw; the process is ending or the buffer regrows
}
DeviceScratch::DeviceScratch(DeviceScratch&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
DeviceScratch& DeviceScratch::operator=(DeviceScratch&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void* DeviceScratch::get(size_t bytes) {
  if (bytes <= bytes_ && ptr_) return ptr_;
  const size_t old_bytes = bytes_;
  if (ptr_) {
    CUDA_CHECK(cudaDeviceSynchronize());  // earlier kernels may still read the old buffer
    CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  // Grow geometrically so a slowly growing request (decode context) reallocates rarely.
  const size_t want = std::max({bytes, 2 * old_bytes, kCudaScratchMinBytes});
  cudaError_t e = cudaMalloc(&ptr_, want);
  if (e != cudaSuccess) {
    cudaGetLastError();
    ptr_ = nullptr;
    fail(ErrorKind::OutOfMemory, "CUDA scratch allocation of ", want, " bytes failed");
  }
  bytes_ = want;
  return ptr_;
}

Context::Context(int device) : device_(device) {
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  sm_count_ = prop.multiProcessorCount;
  cc_major_ = prop.major;
  smem_optin_ = prop.sharedMemPerBlockOptin;
  l2_bytes_ = static_cast<size_t>(prop.l2CacheSize);
  cudaStream_t s;
  // Blocking stream: ordered with the legacy default stream used by Tensor copies (see header).
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
  stream_ = sailvl::cuda::Stream(s);
  lt_ = sailvl::cuda::make_cublaslt();
  CUDA_CHECK(cudaMalloc(&lt_workspace_, kLtWorkspaceBytes));
  CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_), sizeof(int64_t)));
}

Context::~Context() {
  if (lt_workspace_) cudaFree(lt_workspace_);
  if (pinned_) cudaFreeHost(pinned_);
}

namespace {
std::mutex g_table_mu;
std::unique_ptr<Context>* g_table = nullptr;  // leaked on purpose: outlives static tensors
int g_count = 0;
}  // namespace

void Context::release_all() {
  std::lock_guard<std::mutex> lock(g_table_mu);
  if (!g_table) return;
  cudaDeviceSynchronize();
  for (int i = 0; i < g_count; ++i) g_table[i].reset();
}

Context& Context::get(int device) {
  auto& mu = g_table_mu;
  auto& table = g_table;
  auto& count = g_count;
  std::lock_guard<std::mutex> lock(mu);
  if (!table) {
    SAILVL_CHECK(sailvl::cuda::available(), Cuda, sailvl::cuda::status().reason);
    count = sailvl::cuda::status().device_count;
    table = new std::unique_ptr<Context>[static_cast<size_t>(count)];
  }
  SAILVL_CHECK(device >= 0 && device < count, Internal, "CUDA device ", device, " out of range (", count, " devices)");
  auto& slot = table[device];
  if (!slot) slot.reset(new Context(device));
  int cur = -1;
  CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) CUDA_CHECK(cudaSetDevice(device));
  return *slot;
}

RowView row_view(const Tensor& t, const char* op, const char* what) {
  SAILVL_CHECK(t.defined() && t.dim() >= 1, Internal, op, ": ", what, " must have at least one dim");
  RowView v;
  v.ptr = t.raw_data();
  v.cols = t.size(-1);
  SAILVL_CHECK(t.stride(-1) == 1 || v.cols == 1, Internal, op, ": ", what, " ", t.describe(),
               " needs a contiguous last dim");
  v.rows = 1;
  v.row_stride = v.cols;
  // Collapse leading dims from the innermost outwards: each must step by (size of the inner block).
  int64_t expect = -1;  // stride the next-outer dim must have (in elements); -1 = not fixed yet
  for (int64_t d = t.dim() - 2; d >= 0; --d) {
    const int64_t n = t.size(d), st = t.stride(d);
    if (n == 1) continue;
    if (expect < 0) {
      v.row_stride = st;
      SAILVL_CHECK(st >= v.cols, Internal, op, ": ", what, " ", t.describe(), " has overlapping rows");
      expect = st * n;
    } else {
      SAILVL_CHECK(st == expect, Internal, op, ": ", what, " ", t.describe(),
                   " has leading dims that do not collapse into rows");
      expect *= n;
    }
    v.rows *= n;
  }
  return v;
}

int param_kind(const Tensor& t, const char* op, const char* what) {
  SAILVL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, Internal, op, ": ", what, " ", t.describe(),
               " must be F32 or BF16");
  return t.dtype() == DType::BF16 ? 1 : 0;
}

unsigned grid_for(int64_t n, int threads, const Context& ctx) {
  const int64_t need = (n + threads - 1) / threads;
  const int64_t cap = int64_t{ctx.sm_count()} * 16;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(need, cap)));
}

}  // namespace sailvl::ops::cuda
