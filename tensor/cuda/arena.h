// Activation arena: one device allocation, carved into tensors by a bump pointer.
//
//   cuda::Arena arena(256 << 20, Device::cuda());      // once, sized before the first forward
//   Tensor h = arena.alloc({T, D}, DType::BF16);       // views into the block, 256-byte aligned
//   ... one forward ...
//   arena.reset();                                     // next step reuses the same bytes
//
// Tensors from alloc() share the arena's storage (so the memory stays valid while any of them is
// alive), but reset() hands the same bytes out again: using a tensor from before reset() after it
// is the caller's bug, exactly as with any arena. No allocation, no free, no synchronisation inside
// the decode loop. alloc() throws ErrorKind::OutOfMemory naming the request when the block is full.
#pragma once

#include <cstddef>
#include <memory>

#include "tensor/tensor.h"

namespace sailvl::cuda {

class Arena {
 public:
  Arena(size_t bytes, Device device);
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor alloc(const Shape& shape, DType dtype);
  void reset() { used_ = 0; }

  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  size_t capacity() const { return capacity_; }
  Device device() const { return device_; }

  static constexpr size_t kAlign = 256;

 private:
  std::shared_ptr<Storage> storage_;
  Device device_;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t peak_ = 0;
};

}  // namespace sailvl::cuda
