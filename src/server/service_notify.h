// ServiceNotify: what netsemd tells the service manager that started it,
// through libsystemd's sd_notify (the NOTIFY_SOCKET protocol): READY=1 once
// it serves, RELOADING=1 then READY=1 around a reload, STOPPING=1 when it
// shuts down, STATUS= lines for `systemctl status`, and WATCHDOG=1 pings
// when the manager asks for them (WatchdogSec=). Without NOTIFY_SOCKET (not
// started by systemd, or not Type=notify) every call does nothing.
//
// The pings are the caller's to send from its event loop, every
// watchdog_interval(): a loop that is stuck sends none, and the manager
// restarts the service. That is their point, so no thread of their own.
//
// Thread safety: event-loop thread only (the calls write to one datagram
// socket; libsystemd opens it per call).
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace netsem::server {

class ServiceNotify {
 public:
  // Reads NOTIFY_SOCKET and the watchdog's WATCHDOG_USEC/WATCHDOG_PID once.
  ServiceNotify();

  // Whether a service manager listens (NOTIFY_SOCKET is set).
  bool enabled() const { return enabled_; }
  // How often to call watchdog(): half the manager's WatchdogSec, or
  // nullopt when no watchdog is asked for this process.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

  // READY=1 with STATUS=`status`: recovered, listening, serving.
  void ready(std::string_view status);
  // RELOADING=1 with MONOTONIC_USEC= (systemd 253's Type=notify-reload
  // wants it; older managers ignore it): a reload begins. ready() ends it.
  void reloading();
  // STOPPING=1 with STATUS=`status`: the shutdown has begun.
  void stopping(std::string_view status);
  // STATUS=`status` alone.
  void status(std::string_view status);
  // WATCHDOG=1: the event loop is alive.
  void watchdog();

 private:
  // Sends `state`; a failure is logged once (the manager may be gone).
  void send(std::string_view state);

  bool enabled_ = false;
  bool failure_logged_ = false;
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace netsem::server
