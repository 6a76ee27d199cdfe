// Tensor: shared storage + byte offset + shape + strides (in elements) + dtype + device.
//
// Dimension order is PyTorch's (outermost first) and so are the view semantics: narrow, select,
// transpose, permute and reshape-of-contiguous return views that share storage; contiguous(),
// clone(), to(Device) and to(DType) copy. Sizes, strides and offsets are int64.
//
//   Tensor x = Tensor::empty({T, D}, DType::F32);        // [T, D]
//   Tensor row = x.select(0, 3);                         // [D], view
//   Tensor xt = x.transpose(0, 1).contiguous();          // [D, T], copy
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace sailvl {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);  // throws on overflow or negative dims
Shape contiguous_strides(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() == false

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A view of existing storage (e.g. a weight inside an mmap'd safetensors file).
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype);
  // Host tensor copied from a float vector (tests, small tables).
  static Tensor from_floats(const std::vector<float>& v, const Shape& shape, DType dtype = DType::F32);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const { return shape_.at(wrap_dim(d)); }
  int64_t stride(int64_t d) const { return strides_.at(wrap_dim(d)); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  size_t byte_offset() const { return offset_; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw_data() const;  // pointer to element 0 (host or device)
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw_data());
  }

  // ---- views (share storage) ----
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor reshape(const Shape& shape) const;  // contiguous input only; one -1 allowed
  Tensor unsqueeze(int64_t dim) const;

  // ---- copies ----
  Tensor contiguous() const;  // returns *this if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  void copy_from(const Tensor& src);  // same shape; any dtype/strides/devices

  // Host-only helpers for tests and small data.
  std::vector<float> to_floats() const;  // any floating/int dtype, any strides
  float item_f32(const std::vector<int64_t>& index) const;

  std::string describe() const;  // "BF16[2, 3] cpu"

 private:
  int64_t wrap_dim(int64_t d) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::F32;
};

}  // namespace sailvl
