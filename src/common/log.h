// Logging shared by netsemd and the command-line tool: spdlog's default
// logger writing to stderr, one line per event, level chosen by name, in
// one of two formats:
//   text  `2026-12-03T15:20:01.123Z info message key=value ...`
//   json  `{"time":"2026-12-03T15:20:01.123Z","level":"info","message":"...",
//          "key":value,...}`, one object per line (for log shippers).
// Times are UTC with a `Z`, to the millisecond, in both.
// log_event writes a message with structured fields (a session's peer,
// label, cause...): as `key=value` words after the message in text (values
// escaped by escape_for_log, so one word each), as members of the object in
// JSON (strings JSON-escaped: any byte a peer sent stays valid JSON).
// Plain spdlog calls write the message alone.
// Also: the escaping of untrusted text (labels, names, anything a peer
// sent) so that a text line stays one line of plain text; and
// RateLimitedLog, which keeps a kind of message a peer can trigger at will
// (a denied connection, an overflowing session) from flooding the log.
//
// Thread safety: init_logging once at start, before other threads log;
// after that log_event and spdlog's calls may be made from any thread
// (spdlog's sink is then the only shared state, and init_logging's default
// one locks: netsemd logs from its loop thread, its raft thread and
// libuv's thread pool). escape_for_log is a pure function. A LogRateLimit
// or RateLimitedLog is used by one thread at a time (netsemd's event loop,
// or under its owner's lock).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "netsem/status.h"

namespace netsem {

// The level names accepted by init_logging and the `log_level` option, from
// the most detailed; `warn` and `warning` are the same level, `off` writes
// nothing.
inline constexpr std::string_view kLogLevels = "trace debug info warn warning error off";
// The format names accepted by init_logging and the `log_format` option.
inline constexpr std::string_view kLogFormats = "text json";

enum class LogFormat : std::uint8_t { kText, kJson };

// The level named `name` (one of kLogLevels), or kInvalidArgument naming
// the accepted ones.
Result<spdlog::level::level_enum> parse_log_level(std::string_view name);
// The format named `name` (one of kLogFormats), or kInvalidArgument.
Result<LogFormat> parse_log_format(std::string_view name);

// Sets the default logger: stderr, the level `level` (one of kLogLevels),
// lines in `format`. kInvalidArgument for an unknown level name. When
// stderr is the journal's stream (stderr_is_journal: a systemd service),
// each line begins with its syslog priority as sd-daemon(3) says ("<6>" for
// info, "<4>" warn, "<3>" error), which journald reads and strips, so that
// `journalctl -p warning` finds the warnings and errors.
Status init_logging(std::string_view level, LogFormat format = LogFormat::kText);
// The same, writing to `sink` instead of stderr (tests), with the "<N>"
// priorities when `journal_priorities`.
Status init_logging(std::string_view level, LogFormat format, spdlog::sink_ptr sink, bool journal_priorities = false);
// Whether stderr is connected to journald: systemd sets JOURNAL_STREAM to
// "DEVICE:INODE" of the stream it gives a service, and stderr is that file
// (not redirected elsewhere since).
bool stderr_is_journal();
// The pure part: whether `journal_stream` ("DEVICE:INODE", decimal) names
// `device` and `inode`.
bool journal_stream_matches(std::string_view journal_stream, std::uint64_t device, std::uint64_t inode);
// The format init_logging set (text before it is called).
LogFormat log_format();

// One structured field of a log event: a key (a plain word, not "time",
// "level" or "message") and a text, a number or null. Text is copied nowhere:
// the field borrows it for the call.
class LogField {
 public:
  LogField(std::string_view key, std::string_view text) : key_(key), text_(text), kind_(Kind::kText) {}
  LogField(std::string_view key, const std::string& text) : LogField(key, std::string_view(text)) {}
  LogField(std::string_view key, const char* text) : LogField(key, std::string_view(text)) {}
  template <std::integral T>
  requires(!std::same_as<T, bool> && !std::same_as<T, char>) LogField(std::string_view key, T number) : key_(key) {
    if constexpr (std::is_signed_v<T>) {
      signed_ = number;
      kind_ = Kind::kSigned;
    } else {
      unsigned_ = number;
      kind_ = Kind::kUnsigned;
    }
  }
  // A text, or no field at all when absent (a name only some sessions have).
  LogField(std::string_view key, std::optional<std::string_view> text)
      : key_(key), text_(text.value_or(std::string_view())), kind_(text ? Kind::kText : Kind::kOmitted) {}
  // A number, or null when absent (a wait for ever has no time left).
  LogField(std::string_view key, std::optional<std::int64_t> number) : key_(key) {
    if (number) {
      signed_ = *number;
      kind_ = Kind::kSigned;
    }
  }

  enum class Kind : std::uint8_t { kText, kSigned, kUnsigned, kNull, kOmitted };
  std::string_view key() const { return key_; }
  Kind kind() const { return kind_; }
  std::string_view text() const { return text_; }
  std::int64_t signed_number() const { return signed_; }
  std::uint64_t unsigned_number() const { return unsigned_; }

 private:
  std::string_view key_;
  std::string_view text_;
  std::int64_t signed_ = 0;
  std::uint64_t unsigned_ = 0;
  Kind kind_ = Kind::kNull;
};

// Writes `message` with `fields` at `level` through the default logger, in
// the format init_logging set. Nothing is formatted when the level is off:
// callers on a busy path may call it freely. `message` is written as given
// (it must not hold untrusted text: put that in a field).
void log_event(spdlog::level::level_enum level, std::string_view message, std::initializer_list<LogField> fields);

// `text` with every byte outside printable ASCII, the space, `%`, `"` and
// `=` written as %XX (upper-case hex): escape codes, CR, LF and invalid UTF-8
// from a peer cannot forge or split a log line, and a field's value is one
// bare logfmt word (no space, `"` or `=`) that percent-decoding turns back
// into the bytes sent. Other printable ASCII reads as it was sent.
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
  // log_event through the limit. Nothing is counted when the level is off.
  void event(Clock::time_point now, std::string_view message, std::initializer_list<LogField> fields) {
    if (!spdlog::should_log(level_)) return;
    const auto admission = limit_.admit(now);
    if (admission.suppressed_before != 0) report(admission.suppressed_before);
    if (admission.write) log_event(level_, message, fields);
  }
  spdlog::level::level_enum level() const { return level_; }
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
