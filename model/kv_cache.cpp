#include "model/kv_cache.h"

namespace sailvl::model {

KvCache::KvCache(int64_t layers, int64_t max_seq, int64_t kv_heads, int64_t head_dim, DType dtype, const Device& device)
    : capacity_(max_seq) {
  SAILVL_CHECK(layers > 0 && max_seq > 0 && kv_heads > 0 && head_dim > 0, Internal, "KvCache: bad sizes L=", layers,
               " S=", max_seq, " Hkv=", kv_heads, " Dh=", head_dim);
  k_.reserve(static_cast<size_t>(layers));
  v_.reserve(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    k_.push_back(Tensor::empty({max_seq, kv_heads, head_dim}, dtype, device));
    v_.push_back(Tensor::empty({max_seq, kv_heads, head_dim}, dtype, device));
  }
}

void KvCache::set_length(int64_t n) {
  SAILVL_CHECK(n >= 0 && n <= capacity_, Internal, "KvCache: length ", n, " outside [0, ", capacity_, "]");
  length_ = n;
}

void KvCache::reserve(int64_t rows) {
  if (rows <= capacity_) return;
  SAILVL_CHECK(!k_.empty(), Internal, "KvCache::reserve on an empty cache");
  for (std::vector<Tensor>* kv : {&k_, &v_})
    for (Tensor& t : *kv) {
      Tensor bigger = Tensor::empty({rows, t.size(1), t.size(2)}, t.dtype(), t.device());
      if (length_ > 0) bigger.narrow(0, 0, length_).copy_from(t.narrow(0, 0, length_));
      t = std::move(bigger);
    }
  capacity_ = rows;
}

size_t KvCache::nbytes() const {
  size_t n = 0;
  for (const Tensor& t : k_) n += t.nbytes();
  for (const Tensor& t : v_) n += t.nbytes();
  return n;
}

}  // namespace sailvl::model
