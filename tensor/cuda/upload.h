// Weight upload: host tensor (usually a BF16 view into the mmap'd safetensors file) -> a new
// contiguous device tensor, through a pinned staging buffer in chunks, reporting progress.
//
//   Tensor w = sailvl::cuda::upload(host_w, [&](size_t done, size_t total) { bar.update(done, total); });
//
// Why staged: cudaMemcpy from pageable (mmap) memory copies through a small driver bounce buffer
// and cannot overlap the page faults of the mmap with the DMA. Here a 2 × 16 MiB pinned double
// buffer alternates: while chunk i is DMA'd (cudaMemcpyAsync on a private stream), chunk i+1 is
// memcpy'd from the mmap (faulting its pages in) into the other half. The pinned buffer is
// allocated once per process and reused for every tensor.
// Built with the CUDA backend (tensor/cuda/upload.cpp); without it tensor/cuda_stub.cpp's version
// reports "built without the CUDA backend". model::place() sends every weight through it.
#pragma once

#include <cstddef>
#include <functional>

#include "tensor/tensor.h"

namespace sailvl::cuda {

using UploadProgress = std::function<void(size_t done, size_t total)>;

// Copies `host` (CPU, any strides: non-contiguous input is made contiguous on the host first) to
// a new contiguous tensor of the same dtype and shape on `device`. `progress` (optional) is called
// after each chunk with bytes done and the tensor's total. Synchronous: the device tensor is ready
// when this returns. Throws ErrorKind::Cuda / OutOfMemory.
Tensor upload(const Tensor& host, const UploadProgress& progress = {}, Device device = Device::cuda(0));

// Total pinned staging bytes held (for diagnostics); 0 before the first upload.
size_t upload_staging_bytes();
// Frees the pinned staging buffer, its stream and events (the next upload makes new ones).
void release_upload_staging();

}  // namespace sailvl::cuda
