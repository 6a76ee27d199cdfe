// The limits of this machine, measured in-process: what `sailvl bench`, the microbenchmarks
// (bench/bench_ops_cpu) and `--profile` report their numbers against.
//
//   read_gbs    multi-threaded read of a buffer far larger than the caches, 8 concurrent sequential
//               streams per thread (the way the GEMV reads its weights): GB/s read
//   copy_gbs    multi-threaded memcpy: GB/s, bytes read + bytes written
//   fma_gflops  every thread runs 12 independent chains of 8-wide FMAs in registers (enough to hide
//               the FMA latency on both pipes of an AVX2 core): GFLOP/s, 2 per FMA lane
//
// Each is the best of 3 runs after a warm-up, with the OpenMP threads in effect (ops::num_threads).
//
// On a CUDA device, the probes of bench/bench_ops_cuda, in-process:
//   copy_gbs     cudaMemcpyAsync of 1 GiB device to device: GB/s, bytes read + bytes written
//   gemm_tflops  cuBLASLt BF16 8192³ GEMM, F32 accumulation (the kernel behind ops::linear): TFLOP/s
// each the best of 3 after a warm-up, timed with events on the op stream.
#pragma once

#include <cstdint>

#include "tensor/storage.h"

namespace sailvl::ops {

struct HostLimits {
  double read_gbs = 0, copy_gbs = 0, fma_gflops = 0;
};

// `buffer_mib` sizes the bandwidth buffers (the read probe uses 2×, the copy probe two of them):
// 64 is enough to leave a 32 MiB L3 behind and takes ~0.3 s; the microbenchmarks use 256.
HostLimits measure_host_limits(int64_t buffer_mib = 64);

struct DeviceLimits {
  double copy_gbs = 0, gemm_tflops = 0;
};

// Needs 2 GiB free on the device while it runs (the copy's source and destination; freed after):
// ErrorKind::OutOfMemory if they are not, ErrorKind::Cuda without the CUDA backend.
DeviceLimits measure_device_limits(const Device& device);

}  // namespace sailvl::ops
