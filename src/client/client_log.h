// The library's own logger, behind the public set-up of include/netsem/log.h:
// call sites format with fmt only when the level is on, and the line goes to
// the host's handler or to stderr. Nothing here writes to stdout or uses
// spdlog (whose default logger belongs to the host program).
//
// Thread safety: every function from any thread.
#pragma once

#include <fmt/format.h>

#include <string_view>
#include <utility>

#include "netsem/log.h"

namespace netsem::client {

// Whether a line at `level` would be delivered.
bool log_enabled(LogLevel level);
// Delivers one line to the handler (or stderr). REQUIRES: no line end in it.
void log_line(LogLevel level, std::string_view message);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (log_enabled(level)) log_line(level, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void log_debug(fmt::format_string<Args...> format, Args&&... args) {
  log(LogLevel::kDebug, format, std::forward<Args>(args)...);
}
template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  log(LogLevel::kInfo, format, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warning(fmt::format_string<Args...> format, Args&&... args) {
  log(LogLevel::kWarning, format, std::forward<Args>(args)...);
}

}  // namespace netsem::client
