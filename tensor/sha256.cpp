#include "tensor/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "tensor/error.h"

namespace sailvl {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  SAILVL_CHECK(ctx_->md && EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) == 1, Internal,
               "SHA-256: OpenSSL could not start a digest");
}

Sha256::~Sha256() = default;

Sha256& Sha256::update(std::span<const uint8_t> bytes) {
  SAILVL_CHECK(EVP_DigestUpdate(ctx_->md, bytes.data(), bytes.size()) == 1, Internal, "SHA-256 update failed");
  return *this;
}

Sha256& Sha256::update_u64(uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  return update(b);
}

std::string Sha256::hex() {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  SAILVL_CHECK(EVP_DigestFinal_ex(ctx_->md, d, &n) == 1 && n == 32, Internal, "SHA-256 final failed");
  std::string out(64, '0');
  static const char* hexd = "0123456789abcdef";
  for (unsigned i = 0; i < 32; ++i) {
    out[2 * i] = hexd[d[i] >> 4];
    out[2 * i + 1] = hexd[d[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::span<const uint8_t> bytes) { return Sha256().update(bytes).hex(); }

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SAILVL_CHECK(f.good(), BadImage, path, ": cannot read the file");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update({reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(f.gcount())});
  }
  SAILVL_CHECK(f.eof(), BadImage, path, ": read error");
  return h.hex();
}

}  // namespace sailvl
