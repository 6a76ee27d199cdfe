// Development-only CUDA kernels (library sailvl_cuda_dev: linked by the CUDA tests and
// bench_ops_cuda, never by the sailvl binary).
#pragma once

namespace sailvl::ops::cuda::dev {

// Route ops::attention's prefill (T > 1) through the first, WMMA kernel (true) or back to the
// production mma.sync kernel (false). Process-wide; not thread-safe against running attention.
void use_wmma_prefill(bool on);
bool wmma_prefill_in_use();

}  // namespace sailvl::ops::cuda::dev
