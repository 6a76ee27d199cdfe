#include "tensor/error.h"

#include <cstdio>

namespace sailvl {

const char* error_kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::Usage: return "usage";
    case ErrorKind::BadModel: return "bad model";
    case ErrorKind::BadTokenizer: return "bad tokenizer";
    case ErrorKind::BadImage: return "bad image";
    case ErrorKind::OutOfMemory: return "out of memory";
    case ErrorKind::ContextOverflow: return "context overflow";
    case ErrorKind::NonFinite: return "non-finite logits";
    case ErrorKind::Cuda: return "CUDA failure";
    case ErrorKind::Internal: return "internal error";
    case ErrorKind::Cancelled: return "cancelled";
  }
  return "error";
}

std::string escape_for_print(std::string_view s, size_t max_len) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace sailvl
