// safetensors: reader over mmap (with every rule of docs/VALIDATION.md §safetensors), sharded
// checkpoints through model.safetensors.index.json, and a streaming writer.
//
// Format: [u64 LE header length N][N bytes of JSON header][data]. The header maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section),
// plus an optional "__metadata__" string->string map.
//
// Every error is sailvl::Error(ErrorKind::BadModel) naming the file, the tensor (escaped) and the
// rule that failed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sailvl::loader {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets within the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t header_len = 0;  // N
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;  // sorted by begin
};

// Validate a whole file held in memory (used by the reader and by the fuzzers): header bound,
// UTF-8, JSON shape, duplicate keys, dtypes, checked sizes, contiguous coverage, truncation vs
// trailing bytes. `display_name` is used in error messages.
SafetensorsHeader parse_safetensors(std::span<const uint8_t> file, const std::string& display_name);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  size_t file_size() const;
  const MappedFile& mapping() const { return *map_; }
  const SafetensorsHeader& header() const { return header_; }
  const TensorInfo* find(const std::string& name) const;
  // A read-only view into the mapping; misaligned data is copied into an aligned buffer instead.
  Tensor tensor(const TensorInfo& info) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;  // name -> position in header_.tensors
};

// Streaming writer: the header is fixed up front from (name, dtype, shape) entries in the order
// given; then each tensor's bytes are appended in that order, in as many chunks as the caller
// likes. Memory use is one chunk, so a full-size checkpoint never sits in memory twice.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
  };
  SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void append(const void* bytes, size_t n);  // next bytes of the current tensor(s), in order
  void finish();                             // checks every byte was written; closes the file

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: write whole tensors (any device/dtype/strides; stored as each tensor's dtype).
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sailvl::loader
