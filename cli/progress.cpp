#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace sailvl::cli {

namespace {
double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Progress::Progress(int verbosity) : verbosity_(verbosity), tty_(::isatty(2) != 0) {}

void Progress::update(const std::string& stage, double done, double total, const char* unit) {
  if (verbosity_ < 1) return;
  const Clock::time_point now = Clock::now();
  if (stage != stage_) {
    clear();
    stage_ = stage;
    start_ = now;
    printed_ = false;
  }
  last_done_ = done;
  last_total_ = total;
  unit_ = unit;
  const double elapsed = seconds(now - start_);
  if (elapsed < 0.5) return;
  if (!tty_) {  // one line per stage
    if (printed_) return;
    std::fprintf(stderr, "sailvl: %s (%.0f %s)...\n", stage.c_str(), total, unit);
    std::fflush(stderr);
    printed_ = true;
    return;
  }
  if (printed_ && seconds(now - last_draw_) < 0.1 && done < total) return;
  char rate[48] = "";
  if (std::string(unit) == "tokens" && elapsed > 0) std::snprintf(rate, sizeof rate, ", %.0f tok/s", done / elapsed);
  std::fprintf(stderr, "\r\033[Ksailvl: %s %.0f/%.0f %s (%.0f%%%s)", stage.c_str(), done, total, unit,
               total > 0 ? 100.0 * done / total : 100.0, rate);
  std::fflush(stderr);
  printed_ = line_ = true;
  last_draw_ = now;
}

void Progress::done(const std::string& stage) {
  if (stage != stage_) return;
  clear();
  if (verbosity_ >= 2)
    std::fprintf(stderr, "sailvl: %s: %.0f %s in %.2f s\n", stage.c_str(), last_total_, unit_,
                 seconds(Clock::now() - start_));
  stage_.clear();
}

void Progress::clear() {
  if (line_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    line_ = false;
  }
}

}  // namespace sailvl::cli
