// The library's logger: an atomic level checked before any formatting, and
// the handler behind a shared mutex, held shared while a line is delivered so
// that set_log_handler (exclusive) returns only once the old handler is idle.
// The default sink writes each line to stderr in one write(2), so that lines
// of several threads (or processes sharing the descriptor) never interleave.
#include "client/client_log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <shared_mutex>
#include <string>

namespace netsem {

namespace {

struct Logger {
  std::atomic<LogLevel> level{LogLevel::kWarning};
  std::shared_mutex mutex;
  LogHandler handler;  // guarded by mutex; empty: stderr
};

// Never destroyed: a Client's I/O thread may still log while static
// destructors run at exit.
Logger& logger() {
  static Logger* const instance = new Logger;
  return *instance;
}

void write_stderr(LogLevel level, std::string_view message) {
  std::string line = "netsem: ";
  line.append(log_level_name(level)).append(": ").append(message).append(1, '\n');
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report a failure to log
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

void set_log_handler(LogHandler handler) {
  std::unique_lock lock(logger().mutex);
  logger().handler = std::move(handler);
}

void set_log_level(LogLevel level) {
  logger().level.store(level, std::memory_order_relaxed);
}

LogLevel log_level() {
  return logger().level.load(std::memory_order_relaxed);
}

namespace client {

bool log_enabled(LogLevel level) {
  return level >= log_level();
}

void log_line(LogLevel level, std::string_view message) {
  std::shared_lock lock(logger().mutex);
  if (logger().handler) {
    // A handler that throws loses its line, not the caller's thread.
    try {
      logger().handler(level, message);
    } catch (...) {
    }
  } else {
    write_stderr(level, message);
  }
}

}  // namespace client

}  // namespace netsem
