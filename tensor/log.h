// Messages from the library to whoever runs it: warnings and progress notes go through one sink,
// so the CLI prints them on stderr (and `-q` silences them), a server sends them to its log, and a
// test can capture them.
//
//   sailvl::warn("config.json says tie_word_embeddings false but no lm_head.weight is stored; ...");
//
// The default sink writes "sailvl: warning: <text>\n" to stderr. Thread-safe: the sink is called
// under a lock, one message at a time.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "tensor/error.h"

namespace sailvl {

enum class LogLevel { Warning, Info };

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Replaces the sink; returns the previous one. An empty sink drops every message.
LogSink set_log_sink(LogSink sink);

void log_message(LogLevel level, std::string_view text);

template <typename... Args>
void warn(Args&&... args) {
  log_message(LogLevel::Warning, str_cat(std::forward<Args>(args)...));
}

}  // namespace sailvl
