// Weight upload through a pinned double buffer (see upload.h for the plan).
#include "tensor/cuda/upload.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "tensor/cuda/check.h"

namespace sailvl::cuda {

namespace {

constexpr size_t kChunk = size_t{16} << 20;  // bytes per staging half

// Pinned staging memory and its events; process-lifetime (leaked on purpose at exit, like the
// allocator, so no destructor runs after the CUDA runtime is torn down).
struct Staging {
  std::mutex mu;
  void* buf = nullptr;  // 2 * kChunk bytes
  cudaStream_t stream = nullptr;
  cudaEvent_t done[2] = {nullptr, nullptr};

  void ensure() {
    if (buf) return;
    CUDA_CHECK(cudaMallocHost(&buf, 2 * kChunk));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    for (auto& e : done) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
};

Staging& staging() {
  static Staging* s = new Staging;
  return *s;
}

}  // namespace

void release_upload_staging() {
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  if (!st.buf) return;
  cudaStreamSynchronize(st.stream);
  for (auto& e : st.done) cudaEventDestroy(e);
  cudaStreamDestroy(st.stream);
  cudaFreeHost(st.buf);
  st.buf = nullptr;
  st.stream = nullptr;
  st.done[0] = st.done[1] = nullptr;
}

Tensor upload(const Tensor& host, const UploadProgress& progress, Device device) {
  SAILVL_CHECK(host.defined() && host.device().is_cpu(), Internal, "upload: expected a CPU tensor, got ",
               host.defined() ? host.describe() : std::string("undefined"));
  SAILVL_CHECK(device.is_cuda(), Internal, "upload: target ", device.str(), " is not a CUDA device");
  const Tensor src = host.contiguous();
  Tensor dst = Tensor::empty(src.shape(), src.dtype(), device);
  const size_t total = src.nbytes();
  if (total == 0) {
    if (progress) progress(0, 0);
    return dst;
  }
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  int prev = 0;
  CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != device.index) CUDA_CHECK(cudaSetDevice(device.index));
  st.ensure();
  // dst may be a block the caching allocator recycled while a kernel on the op stream still reads
  // it, and the staging stream is not ordered with that stream: let the device drain first.
  CUDA_CHECK(cudaDeviceSynchronize());
  const auto* from = static_cast<const uint8_t*>(src.raw_data());
  auto* to = static_cast<uint8_t*>(dst.raw_data());
  bool used[2] = {false, false};
  size_t done = 0;
  for (size_t off = 0, i = 0; off < total; off += kChunk, ++i) {
    const int half = static_cast<int>(i % 2);
    const size_t n = std::min(kChunk, total - off);
    uint8_t* stage = static_cast<uint8_t*>(st.buf) + half * kChunk;
    if (used[half]) CUDA_CHECK(cudaEventSynchronize(st.done[half]));  // its previous DMA finished
    std::memcpy(stage, from + off, n);                                // faults the mmap pages in
    CUDA_CHECK(cudaMemcpyAsync(to + off, stage, n, cudaMemcpyHostToDevice, st.stream));
    CUDA_CHECK(cudaEventRecord(st.done[half], st.stream));
    used[half] = true;
    if (progress && i > 0) {
      done = off;  // everything before this chunk has been handed to the DMA engine
      progress(done, total);
    }
  }
  CUDA_CHECK(cudaStreamSynchronize(st.stream));
  if (progress) progress(total, total);
  if (prev != device.index) CUDA_CHECK(cudaSetDevice(prev));
  return dst;
}

size_t upload_staging_bytes() {
  Staging& st = staging();
  std::lock_guard<std::mutex> lock(st.mu);
  return st.buf ? 2 * kChunk : 0;
}

}  // namespace sailvl::cuda
