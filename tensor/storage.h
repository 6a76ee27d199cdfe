// Where tensor bytes live. Three kinds, one interface:
//   CpuBuffer   64-byte aligned host memory we own
//   MappedFile  a read-only mmap of a file (weights are never copied on CPU)
//   CudaBuffer  device memory from the caching allocator (tensor/cuda_runtime.h)
// Each owner is move-only RAII; a Tensor shares its Storage through shared_ptr so views are cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sailvl {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  std::string str() const;
};

class Storage {
 public:
  virtual ~Storage() = default;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  virtual void* data() = 0;
  virtual size_t nbytes() const = 0;
  virtual Device device() const = 0;
  virtual bool read_only() const { return false; }
};

// Host memory, 64-byte aligned, optionally zeroed.
class CpuBuffer final : public Storage {
 public:
  explicit CpuBuffer(size_t nbytes, bool zero = false);
  ~CpuBuffer() override;
  void* data() override { return ptr_; }
  size_t nbytes() const override { return nbytes_; }
  Device device() const override { return Device::cpu(); }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
};

// A whole file mapped read-only. Opening an empty file is allowed (data() == nullptr).
class MappedFile final : public Storage {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile() override;
  void* data() override { return ptr_; }
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(ptr_); }
  size_t nbytes() const override { return size_; }
  Device device() const override { return Device::cpu(); }
  bool read_only() const override { return true; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// Device memory; freed back to the caching allocator. Defined in tensor/cuda_runtime.cpp (or a
// stub that always throws when the CUDA backend is not built).
std::shared_ptr<Storage> cuda_alloc_storage(size_t nbytes, int device);

}  // namespace sailvl
