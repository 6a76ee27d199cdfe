// CUDA_CHECK / CUBLAS_CHECK and move-only RAII handles. Only included by code built
// with the CUDA backend (ops/cuda, tensor/cuda). Every failure throws sailvl::Error(Kind::Cuda)
// naming the model stage it happened in (tensor/stage.h), the error's name, the call, the file and
// line, and saying that the process stops (a sticky error leaves the device unusable).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <utility>

#include "tensor/cuda_runtime.h"
#include "tensor/error.h"

namespace sailvl::cuda {

[[noreturn]] void throw_cuda(const char* expr, const char* file, int line, const char* what);

}  // namespace sailvl::cuda

#define CUDA_CHECK(expr)                                                                                    \
  do {                                                                                                      \
    cudaError_t err_ = (expr);                                                                              \
    if (err_ != cudaSuccess) ::sailvl::cuda::throw_cuda(#expr, __FILE__, __LINE__, cudaGetErrorName(err_)); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                                             \
  do {                                                                                                                 \
    cublasStatus_t st_ = (expr);                                                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS) ::sailvl::cuda::throw_cuda(#expr, __FILE__, __LINE__, cublasGetStatusName(st_)); \
  } while (0)

// After a kernel launch: catches bad launch configurations immediately, and counts the launch
// (cuda::launches() in tensor/cuda_runtime.h; one per CUDA_CHECK_LAUNCH, so a launcher that picks
// one of several kernels checks once after the choice).
#define CUDA_CHECK_LAUNCH()           \
  do {                                \
    ::sailvl::cuda::count_launches(); \
    CUDA_CHECK(cudaGetLastError());   \
  } while (0)

namespace sailvl::cuda {

// Move-only owner of a handle H with destroy function D.
template <typename H, auto Destroy>
class Handle {
 public:
  Handle() = default;
  explicit Handle(H h) : h_(h) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, H{});
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  H get() const { return h_; }
  operator H() const { return h_; }
  void reset() {
    if (h_) Destroy(h_);
    h_ = H{};
  }

 private:
  H h_{};
};

using Stream = Handle<cudaStream_t, cudaStreamDestroy>;
using Event = Handle<cudaEvent_t, cudaEventDestroy>;
using CublasHandle = Handle<cublasHandle_t, cublasDestroy>;
using CublasLtHandle = Handle<cublasLtHandle_t, cublasLtDestroy>;

Stream make_stream();
Event make_event();
CublasHandle make_cublas();
CublasLtHandle make_cublaslt();

}  // namespace sailvl::cuda
