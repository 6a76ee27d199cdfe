// Shared test helpers: fixture paths, temp dirs, and expect_close that prints the worst elements.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tensor/tensor.h"

namespace sailvl {
class Observer;
namespace model {
class SailVL;
}
namespace runtime {
struct Limits;
struct Profile;
struct TurnResult;
}  // namespace runtime
}  // namespace sailvl

// True in ASan builds (GCC and clang): timing limits and `ulimit -v` tests are meaningless there
// (ASan reserves terabytes of shadow address space and slows code several-fold); those tests run
// in the plain build of the same suite.
#if defined(__SANITIZE_ADDRESS__)
#define SAILVL_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAILVL_UNDER_ASAN 1
#endif
#endif
#ifndef SAILVL_UNDER_ASAN
#define SAILVL_UNDER_ASAN 0
#endif

namespace sailvl::test {

// tests/data/<rel> in the source tree.
std::filesystem::path data_path(const std::string& rel);
// A fresh empty directory under the build dir's test_tmp/, unique per call. Removed when the test
// process exits, unless a test failed or SAILVL_KEEP_TEST_TMP=1.
std::filesystem::path temp_dir(const std::string& tag);
// The built `sailvl` binary.
std::string sailvl_binary();
// A tiny checkpoint made with `sailvl make-model --preset <preset>` (plus extra args), generated
// once per build directory and reused: build/test_models/<preset><suffix>.
std::filesystem::path tiny_model(const std::string& preset, const std::string& extra_args = "",
                                 const std::string& suffix = "");
// The checkpoint whose goldens are tests/data/models/<name>: a tiny preset, or a variant of one made
// with extra make-model flags (tools/reference/make_model_goldens.py VARIANTS):
//   tiny-internvit-stored-head = tiny-internvit with --lm-head stored (tied config, stored head).
std::filesystem::path golden_model(const std::string& name);
// golden_model(name) loaded on `device`, once per test process (later calls return the same model).
const model::SailVL& golden_sailvl(const std::string& name, const Device& device = Device::cpu());
// One chat turn about images/chat/a.png (one tile: max_tiles 1) asking "Describe the picture.",
// `tokens` greedy tokens, the prompt in one prefill chunk, watched by `o` (the profile/trace tests).
runtime::TurnResult ask_watched(const model::SailVL& m, Observer* o, int64_t tokens);
// ask_watched under a runtime::Profiler on m's device: the profile against `limits`; the turn in *r
// when r is given.
runtime::Profile profile_turn(const model::SailVL& m, int64_t tokens, const runtime::Limits& limits,
                              runtime::TurnResult* r = nullptr);
// Run a shell command; returns exit status and captures stdout (stderr goes to `err` if given).
int run_command(const std::string& cmd, std::string* out = nullptr, std::string* err = nullptr);
std::string read_file(const std::filesystem::path& p);
// Standard base64 (RFC 4648, with padding) of bytes: data: URLs for the server tests. Written here,
// apart from the server's decoder, so the two cannot share a mistake.
std::string base64(const std::string& bytes);
void write_file(const std::filesystem::path& p, const std::string& bytes);

// |got - want| <= atol + rtol * |want| elementwise (both converted to float on the host).
// On failure reports the count of bad elements and the 5 worst with their indices.
::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double atol, double rtol);

}  // namespace sailvl::test

#define EXPECT_CLOSE(got, want, atol, rtol) EXPECT_TRUE(::sailvl::test::all_close((got), (want), (atol), (rtol)))
