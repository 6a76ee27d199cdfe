// Activation arena (see arena.h).
#include "tensor/cuda/arena.h"

namespace sailvl::cuda {

Arena::Arena(size_t bytes, Device device) : device_(device), capacity_(bytes) {
  const int64_t n = static_cast<int64_t>(bytes ? bytes : 1);
  storage_ = Tensor::empty({n}, DType::U8, device).storage();
}

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  const size_t need = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  const size_t at = (used_ + kAlign - 1) / kAlign * kAlign;
  SAILVL_CHECK(at <= capacity_ && need <= capacity_ - at, OutOfMemory, "activation arena on ", device_.str(), ": ",
               dtype_name(dtype), shape_str(shape), " (", need, " bytes) does not fit (",
               capacity_ - std::min(at, capacity_), " of ", capacity_, " bytes free)");
  used_ = at + need;
  if (used_ > peak_) peak_ = used_;
  return Tensor::from_storage(storage_, at, shape, dtype);
}

}  // namespace sailvl::cuda
