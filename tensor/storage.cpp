#include "tensor/storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/error.h"

namespace sailvl {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

CpuBuffer::CpuBuffer(size_t nbytes, bool zero) : nbytes_(nbytes) {
  const size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) return;
  ptr_ = std::aligned_alloc(64, rounded);
  if (!ptr_)
    fail(ErrorKind::OutOfMemory, "out of host memory: allocating ", nbytes,
         " bytes failed (try a smaller --ctx-size, -n or --max-tiles)");
  if (zero) std::memset(ptr_, 0, rounded);
}

CpuBuffer::~CpuBuffer() { std::free(ptr_); }

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::BadModel, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(ErrorKind::BadModel, path, ": cannot stat (", std::strerror(e), ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::BadModel, path, ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    ptr_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (ptr_ == MAP_FAILED) {
      int e = errno;
      ptr_ = nullptr;
      ::close(fd);
      fail(e == ENOMEM ? ErrorKind::OutOfMemory : ErrorKind::BadModel, path, ": mmap failed (", std::strerror(e), ")");
    }
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  if (ptr_) ::munmap(ptr_, size_);
}

}  // namespace sailvl
