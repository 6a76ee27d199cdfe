// The CUDA backend's memory besides tensors, as constants the kernels and the memory plan share
// (ops/workspace.cpp). Plain C++: compiled into every build, CUDA or not, so `sailvl inspect` on a
// CPU-only build still prints the GPU plan.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sailvl::ops::cuda {

inline constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // cuBLASLt recommends >= 32 MiB on Hopper
inline constexpr size_t kScratchMinBytes = size_t{1} << 20;    // every op scratch slot is at least this
// Decode attention splits the keys over blocks of at least this many (ops/cuda/attention.cu), so a
// call keeps at most ceil(keys / kDecodeKeysPerSplit) partial results of H × (Dh + 2) floats.
inline constexpr int64_t kDecodeKeysPerSplit = 64;
// Sampling (ops/cuda/sample.cu) per vocabulary id: logits copy (4), mask (1), sort keys in/out (8),
// values in/out (8), weights (8) = 29 bytes, + cub's radix-sort alternate keys and values (8); the
// slot adds 1 MiB for cub's temporary storage.
inline constexpr uint64_t kSampleBytesPerId = 37;

}  // namespace sailvl::ops::cuda
