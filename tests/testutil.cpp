#include "tests/testutil.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include "model/sail_vl.h"
#include "runtime/profile.h"
#include "runtime/session.h"
#include "tensor/observe.h"

namespace sailvl::test {

namespace fs = std::filesystem;

fs::path data_path(const std::string& rel) { return fs::path(SAILVL_SOURCE_DIR) / "tests" / "data" / rel; }

namespace {

// Every directory temp_dir() made in this process. When the process ends (each ctest entry is one
// test in its own process) they are removed, unless a test failed (then they stay, to be looked at)
// or SAILVL_KEEP_TEST_TMP=1. Without this the suite leaves gigabytes behind: the quantisation tests
// write whole checkpoints, and a CI machine's disk is not unlimited.
class TempDirs {
 public:
  ~TempDirs() {
    const char* keep = std::getenv("SAILVL_KEEP_TEST_TMP");
    if (keep && std::string(keep) == "1") return;
    if (::getpid() != owner_) return;  // a forked child (death test, server test) leaves the parent's dirs alone
    if (::testing::UnitTest::GetInstance()->Failed()) return;
    std::error_code ec;
    for (const fs::path& p : dirs_) fs::remove_all(p, ec);
  }
  void add(const fs::path& p) {
    const std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(p);
  }

 private:
  std::mutex mu_;
  std::vector<fs::path> dirs_;
  pid_t owner_ = ::getpid();
};

}  // namespace

fs::path temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  static TempDirs made;
  fs::path p = fs::path(SAILVL_BUILD_DIR) / "test_tmp" /
               (tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  made.add(p);
  return p;
}

std::string sailvl_binary() { return SAILVL_BINARY; }

std::string base64(const std::string& bytes) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += k[(v >> s) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += std::string{k[(v >> 18) & 63], k[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += std::string{k[(v >> 18) & 63], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
  }
  return out;
}

int run_command(const std::string& cmd, std::string* out, std::string* err) {
  fs::path errfile;
  // Run under bash (not /bin/sh): tests use $'..' quoting, pipefail and PIPESTATUS.
  std::string quoted = "'";
  for (char c : cmd) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  std::string full = "bash -c " + quoted;
  if (err) {
    errfile = temp_dir("stderr") / "err.txt";
    full += " 2>" + errfile.string();
  }
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return -1;
  std::string buf;
  char tmp[4096];
  size_t n;
  while ((n = std::fread(tmp, 1, sizeof tmp, p)) > 0) buf.append(tmp, n);
  int st = ::pclose(p);
  if (out) *out = buf;
  if (err) *err = read_file(errfile);
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

fs::path tiny_model(const std::string& preset, const std::string& extra_args, const std::string& suffix) {
  fs::path dir = fs::path(SAILVL_BUILD_DIR) / "test_models" / (preset + suffix);
  // Several test processes may ask at once (ctest -j): generate into a private dir, then rename.
  if (fs::exists(dir / "config.json")) return dir;
  fs::path tmp =
      fs::path(SAILVL_BUILD_DIR) / "test_models" / (".tmp_" + preset + suffix + "_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp.parent_path());
  std::string cmd =
      sailvl_binary() + " make-model --quiet --preset " + preset + " --out " + tmp.string() + " " + extra_args;
  std::string err;
  int rc = run_command(cmd, nullptr, &err);
  if (rc != 0) throw std::runtime_error("make-model failed (" + std::to_string(rc) + "): " + cmd + "\n" + err);
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process won the race; use its copy
  return dir;
}

fs::path golden_model(const std::string& name) {
  if (name == "tiny-internvit-stored-head") return tiny_model("tiny-internvit", "--lm-head stored", "-stored-head");
  return tiny_model(name);
}

const model::SailVL& golden_sailvl(const std::string& name, const Device& device) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<model::SailVL>> cache;
  const std::lock_guard<std::mutex> lock(mu);
  auto& m = cache[name + "@" + device.str()];
  if (!m) m = std::make_unique<model::SailVL>(model::SailVL::load(golden_model(name).string(), device));
  return *m;
}

runtime::TurnResult ask_watched(const model::SailVL& m, Observer* o, int64_t tokens) {
  runtime::SessionOptions so;
  so.preprocess.max_tiles = 1;
  so.prefill_chunk = 4096;
  runtime::Session s(m, so);
  runtime::GenerationOptions g;
  g.max_new_tokens = tokens;
  ObserverScope watch(o);
  return s.ask("Describe the picture.", {runtime::ImageInput::from_file(data_path("images/chat/a.png").string())}, g);
}

runtime::Profile profile_turn(const model::SailVL& m, int64_t tokens, const runtime::Limits& limits,
                              runtime::TurnResult* r) {
  runtime::Profiler prof(m.device());
  prof.begin();
  runtime::TurnResult turn = ask_watched(m, &prof, tokens);
  prof.end();
  if (r) *r = std::move(turn);
  return prof.result(limits);
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double atol, double rtol) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << "shape mismatch: got " << got.describe() << ", want " << want.describe();
  const std::vector<float> g = got.to_floats(), w = want.to_floats();
  struct Bad {
    size_t i;
    double excess;
  };
  std::vector<Bad> bad;
  double max_abs = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::fabs(static_cast<double>(g[i]) - w[i]);
    const double tol = atol + rtol * std::fabs(static_cast<double>(w[i]));
    const bool nan_mismatch = std::isnan(g[i]) != std::isnan(w[i]);
    if (!std::isnan(d)) max_abs = std::max(max_abs, d);
    if (nan_mismatch || d > tol) bad.push_back({i, nan_mismatch ? INFINITY : d - tol});
  }
  if (bad.empty()) return ::testing::AssertionSuccess() << "max |diff| " << max_abs;
  std::sort(bad.begin(), bad.end(), [](const Bad& a, const Bad& b) { return a.excess > b.excess; });
  auto r = ::testing::AssertionFailure();
  r << bad.size() << " of " << g.size() << " elements out of tolerance (atol " << atol << ", rtol " << rtol
    << ", max |diff| " << max_abs << "); worst:";
  const Shape strides = contiguous_strides(got.shape());
  for (size_t k = 0; k < std::min<size_t>(5, bad.size()); ++k) {
    size_t i = bad[k].i;
    r << "\n  [";
    size_t rem = i;
    for (size_t d = 0; d < strides.size(); ++d) {
      r << (d ? "," : "") << rem / static_cast<size_t>(strides[d]);
      rem %= static_cast<size_t>(strides[d]);
    }
    r << "] got " << g[i] << " want " << w[i];
  }
  return r;
}

}  // namespace sailvl::test
