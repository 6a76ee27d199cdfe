// Built only when the CUDA backend is not: every device entry point reports "not built".
#include "tensor/cuda/upload.h"
#include "tensor/cuda_runtime.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace sailvl {

std::shared_ptr<Storage> cuda_alloc_storage(size_t, int) {
  fail(ErrorKind::Cuda, "this sailvl was built without the CUDA backend (configure with -DSAILVL_CUDA=ON)");
}

namespace cuda {

const Status& status() {
  static const Status s{false, false, 0, "built without the CUDA backend"};
  return s;
}
MemStats mem_stats() { return {}; }
void reset_peak() {}
void empty_cache() {}
DeviceMemory device_memory(int) {
  cuda_alloc_storage(0, 0);
  return {};
}
void memcpy_h2d(void*, const void*, size_t) { cuda_alloc_storage(0, 0); }
void memcpy_d2h(void*, const void*, size_t) { cuda_alloc_storage(0, 0); }
void memcpy_d2d(void*, const void*, size_t) { cuda_alloc_storage(0, 0); }
void synchronize() {}
uint64_t launches() { return 0; }
void count_launches(uint64_t) noexcept {}
Tensor upload(const Tensor&, const UploadProgress&, Device) {
  cuda_alloc_storage(0, 0);
  return {};
}
size_t upload_staging_bytes() { return 0; }
void release_upload_staging() {}

}  // namespace cuda
}  // namespace sailvl
