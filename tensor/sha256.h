// SHA-256 (OpenSSL's libcrypto): content identity for images (the session's image cache, the files a
// saved conversation names) where a collision must not be a concern.
//
//   Sha256 h;  h.update(bytes);  h.update(more);  std::string hex = h.hex();
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace sailvl {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& update(std::span<const uint8_t> bytes);
  Sha256& update(std::string_view s) { return update({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  Sha256& update_u64(uint64_t v);  // 8 bytes, little-endian
  std::string hex();               // 64 lowercase hex digits; ends the hash

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

std::string sha256_hex(std::span<const uint8_t> bytes);
// The SHA-256 of a file's bytes; ErrorKind::BadImage naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace sailvl
