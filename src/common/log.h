// Logging shared by netsemd and the command-line tool: spdlog's default
// logger writing to stderr, one line per event, level chosen by name; the
// escaping of untrusted text (labels, names, anything a peer sent) so that a
// log line stays one line of plain text; and RateLimitedLog, which keeps a
// kind of message a peer can trigger at will (a denied connection, an
// overflowing session) from flooding the log.
//
// Thread safety: init_logging once at start, before other threads log.
// escape_for_log is a pure function. A LogRateLimit or RateLimitedLog is used
// by one thread (netsemd's event loop).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "netsem/status.h"

namespace netsem {

// The level names accepted by init_logging and the `log_level` option.
inline constexpr std::string_view kLogLevels = "trace debug info warning error";

// Sets the default logger's level ("trace", "debug", "info", "warning" or
// "error") and line format. kInvalidArgument for any other name.
Status init_logging(std::string_view level);

// `text` with every byte outside printable ASCII, the space and `%` written
// as %XX (upper-case hex): escape codes, CR, LF and invalid UTF-8 from a peer
// cannot forge or split a log line. Printable ASCII reads as it was sent.
std::string escape_for_log(std::string_view text);

// The decision behind RateLimitedLog, apart from logging and the clock (time
// is passed in). Windows are fixed: the first line admitted after a window
// is over opens the next one at that moment. In a window at most `burst`
// lines are admitted; later ones are counted as suppressed. The count is
// handed out once, either with the first line of the next window or by
// take_suppressed once the window is over, so that it is reported even when
// the flood stops.
class LogRateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  struct Admission {
    bool write = false;                   // write this line
    std::uint64_t suppressed_before = 0;  // report this many suppressed lines first
  };

  // REQUIRES: burst >= 1, window > 0.
  LogRateLimit(std::size_t burst, Clock::duration window) : burst_(burst), window_(window) {}

  // One line of this kind at `now` (non-decreasing over calls).
  Admission admit(Clock::time_point now);
  // The lines suppressed in a window that is over at `now` (then forgotten);
  // 0 while the window is still open or when none were suppressed.
  std::uint64_t take_suppressed(Clock::time_point now);
  // Every line suppressed so far, window over or not (at shutdown).
  std::uint64_t take_all_suppressed() { return std::exchange(suppressed_, 0); }
  // When take_suppressed will report a count: the end of the current
  // window, or nullopt when nothing is suppressed.
  std::optional<Clock::time_point> report_due() const;

 private:
  const std::size_t burst_;
  const Clock::duration window_;
  bool started_ = false;
  Clock::time_point window_start_{};
  std::size_t admitted_ = 0;
  std::uint64_t suppressed_ = 0;
};

// One kind of log message (e.g. "denied connection") at one level, written
// through spdlog's default logger at most `burst` times per `window`; past
// that, one "<kind>: N similar messages suppressed" line per window. The
// owner calls flush() at report_due() so the count is written even when no
// further message of the kind comes.
class RateLimitedLog {
 public:
  using Clock = LogRateLimit::Clock;

  RateLimitedLog(spdlog::level::level_enum level, std::string kind, std::size_t burst = 10,
                 Clock::duration window = std::chrono::seconds(1))
      : level_(level), kind_(std::move(kind)), limit_(burst, window) {}

  // Writes the formatted line unless the limit suppresses it. Arguments
  // holding untrusted text must already be escape_for_log'ed.
  template <typename... Args>
  void log(Clock::time_point now, fmt::format_string<Args...> format, Args&&... args) {
    const auto admission = limit_.admit(now);
    if (admission.suppressed_before != 0) report(admission.suppressed_before);
    if (admission.write) spdlog::log(level_, format, std::forward<Args>(args)...);
  }
  // Writes the count of lines suppressed in a window over at `now`, if any.
  void flush(Clock::time_point now) {
    if (const auto count = limit_.take_suppressed(now); count != 0) report(count);
  }
  // Writes the count of every line suppressed so far (at shutdown).
  void flush_all() {
    if (const auto count = limit_.take_all_suppressed(); count != 0) report(count);
  }
  std::optional<Clock::time_point> report_due() const { return limit_.report_due(); }

 private:
  void report(std::uint64_t count);

  spdlog::level::level_enum level_;
  std::string kind_;
  LogRateLimit limit_;
};

}  // namespace netsem
