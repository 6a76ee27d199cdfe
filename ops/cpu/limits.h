// The CPU backend's block sizes that decide its scratch memory: the kernels use them, and
// ops/workspace.cpp turns them into the bytes the memory plan reserves. Plain constants, no code.
#pragma once

#include <cstdint>

namespace sailvl::ops::cpu {

// Packed GEMM blocking (ops/cpu/gemm.cpp): per thread an MC × KC block of x and a KC × NC panel
// of the weights, F32.
inline constexpr int64_t kGemmKC = 256;   // K block: a 6 × 256 A strip (6 KiB) + a 256 × 16 B strip (16 KiB) fit L1
inline constexpr int64_t kGemmMC = 120;   // row block: 120 × 256 × 4 = 120 KiB of A~ stays in the 512 KiB L2
inline constexpr int64_t kGemmNC = 4096;  // column block: up to 256 × 4096 × 4 = 4 MiB of B~ per thread (L3)

// Attention (ops/cpu/attention.cpp): query rows per task. Causal tiles compute scores up to their
// last row's horizon, so smaller tiles waste less; bidirectional tiles (the ViT) amortise the K/V
// packing over more rows. A task keeps rows × (keys + 2·Dh) floats.
inline constexpr int64_t kAttnRowsCausal = 64, kAttnRowsFull = 128;

}  // namespace sailvl::ops::cpu
