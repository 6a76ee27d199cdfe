// The image-embedding cache: projector output rows of the images a session (or the server) has
// encoded, so an image sent again costs no vision work.
//
// Key: SHA-256 of the decoded picture (width, height, RGB bytes) plus the tiling parameters that
// decide the tiles (max tiles, tile size, thumbnail, video frame) — the same picture tiled another
// way is another entry. Value: the rows [T, 256, D] on the model's device and the tile count.
// Least recently used entries are dropped when the bytes exceed the bound. Thread-safe (one mutex):
// the server's request threads look up while its scheduler inserts.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "image/image.h"
#include "tensor/tensor.h"

namespace sailvl::runtime {

struct ImageKey {
  std::string hex;  // SHA-256 over the picture and the tiling parameters
  bool operator==(const ImageKey&) const = default;
};
// `frame`: a video frame (one tile, no thumbnail) rather than a dynamically tiled image.
ImageKey image_key(const image::RgbImage& img, const image::PreprocessOptions& opt, bool frame);

class ImageCache {
 public:
  explicit ImageCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // The rows of `key`, marked most recently used; nullopt when absent.
  std::optional<Tensor> find(const ImageKey& key);
  // Insert (or replace) and evict least recently used entries beyond the bound. An entry larger
  // than the whole bound is not kept.
  void insert(const ImageKey& key, const Tensor& rows);
  void clear();

  uint64_t bytes() const;
  uint64_t max_bytes() const { return max_bytes_; }
  size_t entries() const;
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    ImageKey key;
    Tensor rows;
  };
  mutable std::mutex mu_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

// The default bound on `device`: 1 GiB on a GPU, 512 MiB on the CPU (an AIMv2 image of 7 tiles is
// 1792 rows × D: 11 MiB in F32 for the 1.5B LLM, 25 MiB for the 7B).
uint64_t default_image_cache_bytes(const Device& device);

}  // namespace sailvl::runtime
