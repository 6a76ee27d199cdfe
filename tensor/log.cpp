#include "tensor/log.h"

#include <cstdio>
#include <mutex>

namespace sailvl {

namespace {

void stderr_sink(LogLevel level, std::string_view text) {
  std::fprintf(stderr, "sailvl: %s%.*s\n", level == LogLevel::Warning ? "warning: " : "", static_cast<int>(text.size()),
               text.data());
  std::fflush(stderr);
}

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

LogSink& sink() {
  static LogSink s = stderr_sink;
  return s;
}

}  // namespace

LogSink set_log_sink(LogSink s) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  LogSink old = std::move(sink());
  sink() = std::move(s);
  return old;
}

void log_message(LogLevel level, std::string_view text) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  if (sink()) sink()(level, text);
}

}  // namespace sailvl
