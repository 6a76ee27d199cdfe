// CUDA runtime layer: device query, caching allocator, copies, RAII handle factories.
//
// The allocator rounds requests up (512 B below 1 MiB, 2 MiB above) and keeps freed blocks in a
// size-keyed multimap for reuse, so steady-state decoding never calls cudaMalloc. It reports
// bytes in use, the peak, and bytes cached; empty_cache() returns cached blocks to the driver.
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>

#include "tensor/cuda/check.h"
#include "tensor/cuda_runtime.h"
#include "tensor/stage.h"
#include "tensor/storage.h"

namespace sailvl {
namespace cuda {

namespace {
thread_local uint64_t t_launches = 0;  // kernel launches issued by this thread (launches())
}  // namespace

uint64_t launches() { return t_launches; }
void count_launches(uint64_t n) noexcept { t_launches += n; }

void throw_cuda(const char* expr, const char* file, int line, const char* what) {
  throw Error(ErrorKind::Cuda, cuda_error_message(what, expr, file, line));
}

const Status& status() {
  static const Status s = [] {
    Status st;
    st.built = true;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      st.reason = std::string("no usable CUDA device (") + cudaGetErrorName(e) + ")";
      cudaGetLastError();  // clear the non-sticky error so later queries are clean
      return st;
    }
    if (n == 0) {
      st.reason = "no usable CUDA device (0 devices)";
      return st;
    }
    st.usable = true;
    st.device_count = n;
    return st;
  }();
  return s;
}

namespace {

struct Allocator {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> pointer
  std::map<void*, size_t> live;              // pointer -> rounded size
  MemStats stats;

  static size_t round(size_t n) {
    const size_t q = n < (1u << 20) ? 512 : (2u << 20);
    return (n + q - 1) / q * q;
  }

  void* allocate(size_t n) {
    const size_t r = round(n ? n : 1);
    std::lock_guard<std::mutex> lock(mu);
    void* p = nullptr;
    auto it = free_blocks.lower_bound(r);
    // Reuse a cached block if it is not much larger than asked (avoid pinning huge blocks).
    if (it != free_blocks.end() && it->first <= r + r / 4) {
      p = it->second;
      stats.cached -= it->first;
      live[p] = it->first;
      stats.in_use += it->first;
      free_blocks.erase(it);
    } else {
      cudaError_t e = cudaMalloc(&p, r);
      if (e != cudaSuccess) {
        cudaGetLastError();
        release_cached_locked();
        e = cudaMalloc(&p, r);
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        const std::string stage = stage_label(current_stage());
        fail(ErrorKind::OutOfMemory, "CUDA allocation of ", n, " bytes failed", stage.empty() ? "" : " during " + stage,
             " (in use ", stats.in_use, " bytes, peak ", stats.peak, "); try a smaller --ctx-size or --max-tiles");
      }
      live[p] = r;
      stats.in_use += r;
    }
    if (stats.in_use > stats.peak) stats.peak = stats.in_use;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live.find(p);
    if (it == live.end()) return;
    stats.in_use -= it->second;
    stats.cached += it->second;
    free_blocks.emplace(it->second, p);
    live.erase(it);
  }

  void release_cached_locked() {
    for (auto& [sz, p] : free_blocks) cudaFree(p);
    free_blocks.clear();
    stats.cached = 0;
  }
};

Allocator& allocator() {
  static Allocator* a = new Allocator;  // leaked on purpose: outlives static tensors at exit
  return *a;
}

class CudaBuffer final : public Storage {
 public:
  CudaBuffer(size_t n, int dev) : n_(n), dev_(dev) { p_ = allocator().allocate(n); }
  ~CudaBuffer() override { allocator().release(p_); }
  void* data() override { return p_; }
  size_t nbytes() const override { return n_; }
  Device device() const override { return Device::cuda(dev_); }

 private:
  void* p_ = nullptr;
  size_t n_;
  int dev_;
};

}  // namespace

MemStats mem_stats() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  return allocator().stats;
}
void reset_peak() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  allocator().stats.peak = allocator().stats.in_use;
}
void empty_cache() {
  std::lock_guard<std::mutex> lock(allocator().mu);
  allocator().release_cached_locked();
}

DeviceMemory device_memory(int device) {
  SAILVL_CHECK(available(), Cuda, status().reason);
  int prev = 0;
  CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != device) CUDA_CHECK(cudaSetDevice(device));
  DeviceMemory m;
  CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
  if (prev != device) CUDA_CHECK(cudaSetDevice(prev));
  return m;
}

void memcpy_h2d(void* dst, const void* src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice)); }
void memcpy_d2h(void* dst, const void* src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost)); }
void memcpy_d2d(void* dst, const void* src, size_t n) { CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice)); }
void synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

Stream make_stream() {
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}
Event make_event() {
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreate(&e));
  return Event(e);
}
CublasHandle make_cublas() {
  cublasHandle_t h;
  CUBLAS_CHECK(cublasCreate(&h));
  return CublasHandle(h);
}
CublasLtHandle make_cublaslt() {
  cublasLtHandle_t h;
  CUBLAS_CHECK(cublasLtCreate(&h));
  return CublasLtHandle(h);
}

}  // namespace cuda

std::shared_ptr<Storage> cuda_alloc_storage(size_t nbytes, int device) {
  SAILVL_CHECK(cuda::available(), Cuda, cuda::status().reason);
  return std::make_shared<cuda::CudaBuffer>(nbytes, device);
}

}  // namespace sailvl
