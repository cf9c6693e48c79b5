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

  template <typename F>
  void for_each(F&& f) {
    for (auto* log : {&denied, &refused, &accept_failed, &overflow, &timeout, &ace}) f(*log);
  }
  // Logs through one of the logs above (arguments holding peer text already
  // escaped), then calls the hook that makes sure a suppressed count is
  // reported in time (the server's report timer).
  template <typename... Args>
  void log(RateLimitedLog& log, fmt::format_string<Args...> format, Args&&... args) {
    log.log(std::chrono::steady_clock::now(), format, std::forward<Args>(args)...);
    if (on_logged_) on_logged_();
  }
  void set_on_logged(std::function<void()> hook) { on_logged_ = std::move(hook); }

 private:
  std::function<void()> on_logged_;
};

}  // namespace netsem::server
