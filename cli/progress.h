// Progress of the long stages on stderr (weights, image decoding, vision, prefill).
//
// On a terminal: one line that updates in place ("\r"), drawn only once a stage has run for half a
// second (quick stages never flicker) and at most ten times a second, and cleared before the answer
// streams to stdout. Not a terminal (a log, a pipe, CI): at most one line per stage, no "\r" — the
// line a stage prints when it passes half a second. -q prints nothing; -v adds each stage's time.
//
//   Progress p(verbosity);
//   p.update("prefill", 512, 1842, "tokens");   // "sailvl: prefill 512/1842 tokens (28%, 310 tok/s)"
//   p.done("prefill");                           // -v: "sailvl: prefill 1842 tokens in 5.9 s"
//   p.clear();                                   // before text goes to stdout
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sailvl::cli {

class Progress {
 public:
  explicit Progress(int verbosity);  // 0 quiet, 1 normal, 2 verbose
  // `unit`: "tokens", "layers", "GB" ... ; a rate is shown for tokens.
  void update(const std::string& stage, double done, double total, const char* unit);
  // The stage ended: -v prints its duration; the terminal line is cleared.
  void done(const std::string& stage);
  void clear();  // erase the terminal line (before stdout gets text)

 private:
  using Clock = std::chrono::steady_clock;
  int verbosity_;
  bool tty_;
  std::string stage_;
  Clock::time_point start_{}, last_draw_{};
  bool printed_ = false;  // this stage has shown something
  bool line_ = false;     // a terminal line is on screen
  double last_done_ = 0, last_total_ = 0;
  const char* unit_ = "";
};

}  // namespace sailvl::cli
