#include "tensor/tensor.h"

#include <cstring>
#include <numeric>

#include "tensor/cuda_runtime.h"

namespace sailvl {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    SAILVL_CHECK(d >= 0, Internal, "negative dimension in shape ", shape_str(s));
    if (d != 0 && n > INT64_MAX / d) fail(ErrorKind::Internal, "shape ", shape_str(s), " overflows int64");
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

static std::shared_ptr<Storage> alloc_storage(size_t nbytes, Device device, bool zero) {
  if (device.is_cpu()) return std::make_shared<CpuBuffer>(nbytes, zero);
  auto s = cuda_alloc_storage(nbytes, device.index);
  if (zero && nbytes) {
    std::vector<uint8_t> z(nbytes, 0);
    cuda::memcpy_h2d(s->data(), z.data(), nbytes);
  }
  return s;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = alloc_storage(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device, false);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = alloc_storage(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device, true);
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype) {
  SAILVL_CHECK(storage != nullptr, Internal, "from_storage: null storage");
  const size_t need = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  SAILVL_CHECK(byte_offset <= storage->nbytes() && need <= storage->nbytes() - byte_offset, Internal,
               "from_storage: ", need, " bytes at offset ", byte_offset, " exceed storage of ", storage->nbytes());
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& v, const Shape& shape, DType dtype) {
  SAILVL_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), Internal, "from_floats: ", v.size(),
               " values for shape ", shape_str(shape));
  Tensor f = empty(shape, DType::F32);
  if (!v.empty()) std::memcpy(f.raw_data(), v.data(), v.size() * 4);
  return dtype == DType::F32 ? f : f.to(dtype);
}

int64_t Tensor::wrap_dim(int64_t d) const {
  const int64_t n = dim();
  if (d < 0) d += n;
  SAILVL_CHECK(d >= 0 && d < n, Internal, "dimension ", d, " out of range for ", describe());
  return d;
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  if (!storage_) return nullptr;
  return static_cast<uint8_t*>(storage_->data()) + offset_;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d);
  SAILVL_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], Internal, "narrow(", d, ", ", start, ", ",
               length, ") out of range for ", describe());
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(start * strides_[d]) * dtype_size(dtype_);
  t.shape_[d] = length;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d);
  Tensor t = narrow(d, index, 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = wrap_dim(a);
  b = wrap_dim(b);
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  SAILVL_CHECK(static_cast<int64_t>(dims.size()) == dim(), Internal, "permute: wrong number of dims");
  std::vector<bool> seen(dims.size(), false);
  Tensor t = *this;
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i]);
    SAILVL_CHECK(!seen[d], Internal, "permute: repeated dim ", d);
    seen[d] = true;
    t.shape_[i] = shape_[d];
    t.strides_[i] = strides_[d];
  }
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  SAILVL_CHECK(is_contiguous(), Internal, "reshape of non-contiguous ", describe(), ": call contiguous() first");
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      SAILVL_CHECK(infer < 0, Internal, "reshape: more than one -1");
      infer = static_cast<int64_t>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    SAILVL_CHECK(known > 0 && numel() % known == 0, Internal, "reshape ", describe(), " to ", shape_str(shape));
    s[infer] = numel() / known;
  }
  SAILVL_CHECK(shape_numel(s) == numel(), Internal, "reshape ", describe(), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  if (d < 0) d += dim() + 1;
  SAILVL_CHECK(d >= 0 && d <= dim(), Internal, "unsqueeze(", d, ") on ", describe());
  Tensor t = *this;
  int64_t st = d < dim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, st);
  return t;
}

// ---- copies ----

namespace {

// Read element `i` (already a pointer to it) as double / write from double. double holds every
// F32/BF16/F16/I32 value exactly and I64 up to 2^53, which covers token ids and offsets.
double load_as_double(const uint8_t* p, DType t) {
  switch (t) {
    case DType::F32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::BF16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return bf16_to_f32(v);
    }
    case DType::F16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return f16_to_f32(v);
    }
    case DType::I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::I64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case DType::U8: return *p;
    case DType::BOOL: return *p ? 1.0 : 0.0;
    case DType::I8: return static_cast<int8_t>(*p);
  }
  return 0;
}

void store_from_double(uint8_t* p, DType t, double x) {
  switch (t) {
    case DType::F32: {
      float v = static_cast<float>(x);
      std::memcpy(p, &v, 4);
      return;
    }
    case DType::BF16: {
      uint16_t v = f32_to_bf16(static_cast<float>(x));
      std::memcpy(p, &v, 2);
      return;
    }
    case DType::F16: {
      uint16_t v = f32_to_f16(static_cast<float>(x));
      std::memcpy(p, &v, 2);
      return;
    }
    case DType::I32: {
      int32_t v = static_cast<int32_t>(x);
      std::memcpy(p, &v, 4);
      return;
    }
    case DType::I64: {
      int64_t v = static_cast<int64_t>(x);
      std::memcpy(p, &v, 8);
      return;
    }
    case DType::U8: *p = static_cast<uint8_t>(x); return;
    case DType::BOOL: *p = x != 0.0; return;
    case DType::I8: *p = static_cast<uint8_t>(static_cast<int8_t>(x)); return;
  }
}

// Host-to-host copy with any strides and dtypes.
void host_copy(const Tensor& dst, const Tensor& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  auto* d = static_cast<uint8_t*>(dst.raw_data());
  const auto* s = static_cast<const uint8_t*>(src.raw_data());
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memmove(d, s, static_cast<size_t>(n) * dtype_size(src.dtype()));
    return;
  }
  // Contiguous F32 <-> BF16 (pixels and activations to and from the GPU): straight loops the
  // compiler vectorises, instead of the generic per-element path below.
  if (dst.is_contiguous() && src.is_contiguous()) {
    if (src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
      const auto* f = reinterpret_cast<const float*>(s);
      auto* h = reinterpret_cast<uint16_t*>(d);
      for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(f[i]);
      return;
    }
    if (src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
      const auto* h = reinterpret_cast<const uint16_t*>(s);
      auto* f = reinterpret_cast<float*>(d);
      for (int64_t i = 0; i < n; ++i) f[i] = bf16_to_f32(h[i]);
      return;
    }
  }
  const size_t ds = dtype_size(dst.dtype()), ss = dtype_size(src.dtype());
  const int64_t nd = src.dim();
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  int64_t so = 0, dof = 0;  // element offsets
  for (int64_t i = 0; i < n; ++i) {
    store_from_double(d + dof * static_cast<int64_t>(ds), dst.dtype(),
                      load_as_double(s + so * static_cast<int64_t>(ss), src.dtype()));
    for (int64_t k = nd - 1; k >= 0; --k) {
      if (++idx[k] < src.shape()[k]) {
        so += src.strides()[k];
        dof += dst.strides()[k];
        break;
      }
      so -= src.strides()[k] * (src.shape()[k] - 1);
      dof -= dst.strides()[k] * (dst.shape()[k] - 1);
      idx[k] = 0;
    }
  }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
  SAILVL_CHECK(shape_ == src.shape_, Internal, "copy_from: ", describe(), " <- ", src.describe());
  SAILVL_CHECK(!(storage_->read_only()), Internal, "copy_from into read-only storage ", describe());
  const Device dd = device(), sd = src.device();
  if (dd.is_cpu() && sd.is_cpu()) return host_copy(*this, src);
  const bool plain = dtype_ == src.dtype_ && is_contiguous() && src.is_contiguous();
  if (plain) {
    if (dd.is_cuda() && sd.is_cpu()) return cuda::memcpy_h2d(raw_data(), src.raw_data(), nbytes());
    if (dd.is_cpu() && sd.is_cuda()) return cuda::memcpy_d2h(raw_data(), src.raw_data(), nbytes());
    return cuda::memcpy_d2d(raw_data(), src.raw_data(), nbytes());
  }
  // Strided or converting copies that touch the device go through the host. Correct and simple;
  // the hot paths (weights upload, KV cache) never take this branch.
  Tensor hs = src;
  if (sd.is_cuda()) {
    // The bytes the view spans (from its first element to its last) in one copy, then a host view
    // with the same strides. (Not src.contiguous(): for a strided device view that is a device
    // clone, whose copy_from would come straight back here.)
    int64_t span = 1;
    for (int64_t d = 0; d < src.dim(); ++d) {
      SAILVL_CHECK(src.strides_[d] >= 0, Internal, "copy_from: negative stride in ", src.describe());
      span += (src.shape_[d] - 1) * src.strides_[d];
    }
    Tensor buf = Tensor::empty({src.numel() == 0 ? 0 : span}, src.dtype_);
    if (src.numel() > 0)
      cuda::memcpy_d2h(buf.raw_data(), src.raw_data(), static_cast<size_t>(span) * dtype_size(src.dtype_));
    hs = buf;
    hs.shape_ = src.shape_;
    hs.strides_ = src.strides_;
  }
  if (dd.is_cpu()) return host_copy(*this, hs);
  Tensor staged = Tensor::empty(shape_, dtype_);
  host_copy(staged, hs);
  if (is_contiguous()) return cuda::memcpy_h2d(raw_data(), staged.raw_data(), nbytes());
  fail(ErrorKind::Internal, "copy_from: strided device destination not supported: ", describe());
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(contiguous());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_floats() const {
  Tensor f = to(Device::cpu()).to(DType::F32).contiguous();
  std::vector<float> v(static_cast<size_t>(f.numel()));
  if (!v.empty()) std::memcpy(v.data(), f.raw_data(), v.size() * 4);
  return v;
}

float Tensor::item_f32(const std::vector<int64_t>& index) const {
  SAILVL_CHECK(static_cast<int64_t>(index.size()) == dim() && device().is_cpu(), Internal, "item_f32 on ", describe());
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    SAILVL_CHECK(index[i] >= 0 && index[i] < shape_[i], Internal, "item_f32 index out of range");
    off += index[i] * strides_[i];
  }
  return static_cast<float>(
      load_as_double(static_cast<const uint8_t*>(raw_data()) + off * static_cast<int64_t>(dtype_size(dtype_)), dtype_));
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device().str();
}

}  // namespace sailvl
