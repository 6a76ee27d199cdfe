// The image-embedding cache: see image_cache.h.
#include "runtime/image_cache.h"

#include "tensor/sha256.h"

namespace sailvl::runtime {

ImageKey image_key(const image::RgbImage& img, const image::PreprocessOptions& opt, bool frame) {
  Sha256 h;
  h.update("sailvl-image-v1");
  h.update_u64(static_cast<uint64_t>(img.width)).update_u64(static_cast<uint64_t>(img.height));
  h.update(img.pixels);
  h.update_u64(static_cast<uint64_t>(frame ? 1 : opt.max_tiles));
  h.update_u64(static_cast<uint64_t>(opt.image_size));
  h.update_u64(frame ? 2 : opt.use_thumbnail ? 1 : 0);
  return {h.hex()};
}

std::optional<Tensor> ImageCache::find(const ImageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = index_.find(key.hex);
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->rows;
}

void ImageCache::insert(const ImageKey& key, const Tensor& rows) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto it = index_.find(key.hex); it != index_.end()) {
    bytes_ -= it->second->rows.nbytes();
    lru_.erase(it->second);
    index_.erase(it);
  }
  if (rows.nbytes() > max_bytes_) return;
  lru_.push_front({key, rows});
  index_[key.hex] = lru_.begin();
  bytes_ += rows.nbytes();
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    bytes_ -= lru_.back().rows.nbytes();
    index_.erase(lru_.back().key.hex);
    lru_.pop_back();
  }
}

void ImageCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.clear();
  index_.clear();
  bytes_ = 0;
}

uint64_t ImageCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ImageCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

uint64_t default_image_cache_bytes(const Device& device) {
  return device.is_cpu() ? uint64_t{512} << 20 : uint64_t{1} << 30;
}

}  // namespace sailvl::runtime
