// Logging: where libnetsem's log lines go.
//
// The library logs what a host program may want to know of: the connection
// to a server was lost or came back, names went to their fallback policy, a
// permit could not be given back (kWarning); which server it connected to
// (kInfo); each connection attempt and its failure (kDebug). It never writes
// to stdout, and it never touches spdlog's default logger or registry (a host
// that uses spdlog itself keeps its own set-up).
//
// By default lines at kWarning and above go to stderr, one write each, as
// "netsem: warning: <message>\n". A host program sends them elsewhere (its
// own logger, a file, nowhere) by installing a handler, and chooses how much
// detail it gets with set_log_level:
//
//   netsem::set_log_level(netsem::LogLevel::kInfo);
//   netsem::set_log_handler([](netsem::LogLevel level, std::string_view message) {
//     my_logger.log(to_my_level(level), "netsem: {}", message);
//   });
//
// The set-up is process-wide: it applies to every Client, and to lines logged
// before any Client exists.
//
// Thread safety: every function may be called from any thread at any time.
// The handler is called from whichever thread logs, most often a Client's
// I/O thread, and from several threads at once: it must be thread-safe,
// return quickly, not throw (an exception is caught and the line dropped),
// and neither call into a netsem::Client (the I/O thread
// would wait on itself) nor call set_log_handler (it would deadlock).
#pragma once

#include <functional>
#include <string_view>

namespace netsem {

enum class LogLevel : unsigned char {
  kDebug,    // each connection attempt, and other detail for diagnosis
  kInfo,     // ordinary events: connected to a server
  kWarning,  // the host program should know: connection lost, fallback, a failed release
  kError,    // reserved for failures the library cannot report through a Status
};

// "debug", "info", "warning" or "error".
std::string_view log_level_name(LogLevel level);

// Receives one log line: its level and the message (no "netsem:" prefix, no
// line end). `message` is valid only during the call.
using LogHandler = std::function<void(LogLevel level, std::string_view message)>;

// Sends every later log line to `handler`; an empty handler restores the
// default (stderr). Returns once no call of the previous handler is still
// running, so whatever that handler used may be destroyed afterwards.
void set_log_handler(LogHandler handler);

// Lines below `level` are dropped before they are formatted (default:
// kWarning).
void set_log_level(LogLevel level);
LogLevel log_level();

}  // namespace netsem
