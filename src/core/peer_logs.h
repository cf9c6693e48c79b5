// PeerLogs: the log messages a peer can trigger at will (a denied
// connection, an overflowing session, a session timeout, a refused ACE
// client), each a RateLimitedLog, shared by the server, its sessions and the
// dispatcher.
//
// Thread safety: event-loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <utility>

#include "common/log.h"

namespace netsem::server {

// The log messages a peer can repeat at will, each written at most a few
// times a second with a count of the rest (see RateLimitedLog).
class PeerLogs {
 public:
  RateLimitedLog denied{spdlog::level::warn, "denied connection"};
  RateLimitedLog refused{spdlog::level::warn, "refused connection"};
  RateLimitedLog accept_failed{spdlog::level::warn, "accept failed"};
  RateLimitedLog overflow{spdlog::level::warn, "session closed with answers unread"};
  RateLimitedLog timeout{spdlog::level::info, "session timeout"};
  RateLimitedLog ace{spdlog::level::info, "ACE session refused or closed"};
  RateLimitedLog auth{spdlog::level::warn, "failed AUTH"};
  // The start, label and end of every session, and slow waits: one line
  // each in normal use, but a peer that connects and closes in a loop must
  // not flood the log, so past a generous budget they are counted.
  RateLimitedLog sessions{spdlog::level::info, "session began, label or ended", 200};
  RateLimitedLog slow_waits{spdlog::level::info, "slow wait", 100};

  template <typename F>
  void for_each(F&& f) {
    for (auto* log : {&denied, &refused, &accept_failed, &overflow, &timeout, &ace, &auth, &sessions, &slow_waits})
      f(*log);
  }
  // Logs through one of the logs above (arguments holding peer text already
  // escaped), then calls the hook that makes sure a suppressed count is
  // reported in time (the server's report timer).
  template <typename... Args>
  void log(RateLimitedLog& log, fmt::format_string<Args...> format, Args&&... args) {
    log.log(std::chrono::steady_clock::now(), format, std::forward<Args>(args)...);
    if (on_logged_) on_logged_();
  }
  // log_event through one of the logs above (RateLimitedLog::event), then
  // the hook as log() does. Nothing is done when the log's level is off.
  void event(RateLimitedLog& log, std::string_view message, std::initializer_list<LogField> fields) {
    if (!spdlog::should_log(log.level())) return;
    log.event(std::chrono::steady_clock::now(), message, fields);
    if (on_logged_) on_logged_();
  }
  void set_on_logged(std::function<void()> hook) { on_logged_ = std::move(hook); }

 private:
  std::function<void()> on_logged_;
};

}  // namespace netsem::server
