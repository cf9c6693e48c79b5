// sd_notify calls, their state strings, and the watchdog's interval.
#include "server/service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "common/log.h"

namespace netsem::server {

namespace {

// A STATUS= value is one line: what follows a newline would be read as
// another assignment.
std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

}  // namespace

ServiceNotify::ServiceNotify() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  std::uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is ours.
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::microseconds(usec / 2);
  }
}

void ServiceNotify::ready(std::string_view status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void ServiceNotify::reloading() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t usec =
      static_cast<std::uint64_t>(now.tv_sec) * 1000000 + static_cast<std::uint64_t>(now.tv_nsec) / 1000;
  send("RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=" + std::to_string(usec));
}

void ServiceNotify::stopping(std::string_view status) {
  send("STOPPING=1\nSTATUS=" + one_line(status));
}

void ServiceNotify::status(std::string_view status) {
  send("STATUS=" + one_line(status));
}

void ServiceNotify::watchdog() {
  send("WATCHDOG=1");
}

void ServiceNotify::send(std::string_view state) {
  if (!enabled_) return;
  const std::string text(state);
  const int result = sd_notify(0, text.c_str());
  if (result < 0 && !failure_logged_) {
    failure_logged_ = true;
    spdlog::warn("cannot notify the service manager (NOTIFY_SOCKET): {}", std::strerror(-result));
  }
}

}  // namespace netsem::server
