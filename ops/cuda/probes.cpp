// The device limit probes of ops/probes.h (bench/bench_ops_cuda's, in-process).
#include <cuda_runtime_api.h>

#include <algorithm>

#include "ops/cuda/context.h"
#include "ops/cuda/linear_detail.h"
#include "ops/probes.h"

namespace sailvl::ops {

namespace {

// Device memory for one probe, freed when the probe ends (not through the caching allocator, so the
// probe leaves no 2 GiB block cached behind it).
class Buffer {
 public:
  explicit Buffer(size_t bytes) {
    if (cudaMalloc(&p_, bytes) != cudaSuccess) {
      cudaGetLastError();
      p_ = nullptr;
      fail(ErrorKind::OutOfMemory, "the device limit probe needs ", bytes >> 20, " MiB free on the GPU");
    }
  }
  ~Buffer() { cudaFree(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// Best of 3 timed runs after one warm-up, with events on `s`: seconds.
template <typename F>
double best_seconds(cudaStream_t s, F&& run) {
  sailvl::cuda::Event a = sailvl::cuda::make_event(), b = sailvl::cuda::make_event();
  run();
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    CUDA_CHECK(cudaEventRecord(a, s));
    run();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, static_cast<double>(ms) / 1e3);
  }
  return std::max(best, 1e-9);
}

}  // namespace

DeviceLimits measure_device_limits(const Device& device) {
  SAILVL_CHECK(device.is_cuda(), Internal, "measure_device_limits on ", device.str());
  auto& ctx = cuda::Context::get(device.index);
  const cudaStream_t s = ctx.stream();
  CUDA_CHECK(cudaDeviceSynchronize());
  DeviceLimits r;
  {
    constexpr size_t kCopyBytes = size_t{1} << 30;
    Buffer src(kCopyBytes), dst(kCopyBytes);
    CUDA_CHECK(cudaMemsetAsync(src.get(), 0, kCopyBytes, s));
    r.copy_gbs =
        2.0 * kCopyBytes /
        best_seconds(
            s, [&] { CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), kCopyBytes, cudaMemcpyDeviceToDevice, s)); }) /
        1e9;
  }
  {
    constexpr int64_t n = 8192;
    constexpr size_t bytes = static_cast<size_t>(n * n) * 2;  // BF16
    Buffer x(bytes), w(bytes), o(bytes);
    // 0x3c3c = 0.0115 in BF16: finite inputs (the speed of the tensor cores does not depend on them).
    CUDA_CHECK(cudaMemsetAsync(x.get(), 0x3c, bytes, s));
    CUDA_CHECK(cudaMemsetAsync(w.get(), 0x3c, bytes, s));
    cuda::LtCall c;
    c.device = device.index;
    c.M = c.N = c.K = n;
    c.x = x.get();
    c.ldx = n;
    c.w = w.get();
    c.out = o.get();
    c.ldo = n;
    r.gemm_tflops = 2.0 * n * n * n / best_seconds(s, [&] { cuda::lt_matmul(c); }) / 1e12;
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  return r;
}

}  // namespace sailvl::ops
