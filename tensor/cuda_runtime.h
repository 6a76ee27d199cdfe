// The CUDA runtime layer, as seen by code that must also build without CUDA.
//
// With the CUDA backend built (SAILVL_HAS_CUDA) these call the CUDA runtime; without it they
// report "not built" (cuda_status) or throw ErrorKind::Cuda. Nothing here prints: a machine whose
// driver is missing (cudaGetDeviceCount itself fails) is just "no usable CUDA device".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sailvl::cuda {

struct Status {
  bool built = false;   // compiled with the CUDA backend
  bool usable = false;  // at least one device answered
  int device_count = 0;
  std::string reason;  // why not usable, one line
};

// Cached after the first call; safe to call from anywhere, never throws.
const Status& status();
inline bool available() { return status().usable; }

// Caching allocator statistics (bytes). Zero when not built.
struct MemStats {
  size_t in_use = 0;
  size_t peak = 0;
  size_t cached = 0;  // held by the cache, not in use
};
MemStats mem_stats();
void reset_peak();
void empty_cache();

// cudaMemGetInfo for `device`: bytes free and in total on the card (other processes' use and this
// process's CUDA context are already taken out of `free`). Throws ErrorKind::Cuda when not built or
// when the call fails.
struct DeviceMemory {
  size_t free = 0;
  size_t total = 0;
};
DeviceMemory device_memory(int device);

// Raw copies; kinds are inferred (unified addressing). Synchronous w.r.t. the host.
void memcpy_h2d(void* dst, const void* src, size_t n);
void memcpy_d2h(void* dst, const void* src, size_t n);
void memcpy_d2d(void* dst, const void* src, size_t n);
void synchronize();

// Kernel launches this thread has issued (0 without the CUDA backend): every launch in ops/cuda is
// followed by CUDA_CHECK_LAUNCH(), which counts it, and a library call that launches work on its
// own (a cuBLASLt matmul, a cub sort) counts as one. `--profile` reports launches per op and per
// decoded token from the difference of two readings. Copies (cudaMemcpy) are not launches.
uint64_t launches();
void count_launches(uint64_t n = 1) noexcept;  // called by the launchers

}  // namespace sailvl::cuda
