// One checking vocabulary for the whole runtime (docs/CONTRIBUTING.md item 8).
//
//   SAILVL_CHECK(cond, Kind::BadModel, "file ", path, ": tensor ", name, " missing");
//
// throws sailvl::Error with a message built from the arguments. The Kind decides the CLI's exit
// code, so a bad image and a bad checkpoint are told apart by scripts. `assert` is used only for
// internal invariants; never for input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace sailvl {

enum class ErrorKind {
  Usage = 2,            // bad flag or argument
  BadModel = 3,         // config.json / safetensors / missing or misshapen tensor
  BadTokenizer = 4,     // tokenizer files, invalid UTF-8 in a prompt
  BadImage = 5,         // undecodable or over-limit image
  OutOfMemory = 6,      // allocation failed (host or device)
  ContextOverflow = 7,  // prompt + image + max_new tokens exceed the context
  NonFinite = 8,        // NaN/Inf logits during generation
  Cuda = 9,             // CUDA/cuBLAS failure
  Internal = 10,        // a bug: an invariant did not hold
  Cancelled = 130,      // stopped on request (Ctrl-C, a closed connection): 128 + SIGINT
};

const char* error_kind_name(ErrorKind k);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, Args&&... args) {
  throw Error(kind, str_cat(std::forward<Args>(args)...));
}

// Escape a string from an untrusted file for printing (names in error messages).
std::string escape_for_print(std::string_view s, size_t max_len = 200);

}  // namespace sailvl

#define SAILVL_CHECK(cond, kind, ...)                                    \
  do {                                                                   \
    if (!(cond)) ::sailvl::fail(::sailvl::ErrorKind::kind, __VA_ARGS__); \
  } while (0)
