// The soak's child processes: forking a worker or netsemd so that it dies
// with the driver (PR_SET_PDEATHSIG, SIGKILL: even a driver killed by
// SIGKILL leaves no stray process), waiting for an exit with a deadline, and
// ServerProcess, one netsemd at a time on the soak's configuration.
//
// Children get a process group of their own, so that a Ctrl-C on the
// terminal reaches only the driver, which then stops them in order.
//
// Thread safety: the driver's single thread only (it must not have other
// threads when it forks).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace netsem::soak {

// Forks; the child runs `child` (which should not return: if it does, the
// child exits with 0 without running the parent's exit handlers). Returns
// the child's pid, or -1 when fork failed.
pid_t fork_child(const std::function<void()>& child);

// Reaps `pid` once it has exited; its wait status, or nullopt if it still
// runs at `deadline_ns` (monotonic_ns; a deadline in the past only looks).
std::optional<int> wait_for_exit(pid_t pid, std::int64_t deadline_ns);

// "exit 1", "signal 9 (Killed)".
std::string describe_wait_status(int status);

// netsemd, started again and again on one configuration.
class ServerProcess {
 public:
  ServerProcess(std::filesystem::path binary, std::filesystem::path config, std::filesystem::path log);
  // Kills (SIGKILL) and reaps a server that still runs.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Forks and execs netsemd with its output appended to the log file.
  // REQUIRES: !running().
  bool start(std::string& error);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // REQUIRES: running().
  void signal(int signal);
  // Reaps the server if it has exited by `deadline_ns`: its wait status.
  std::optional<int> wait_exit(std::int64_t deadline_ns);
  // Appends a line to the log (a marker between instances).
  void log_line(const std::string& line) const;
  // The last `lines` lines of the log, for a report.
  std::string log_tail(std::size_t lines) const;

 private:
  std::filesystem::path binary_;
  std::filesystem::path config_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
};

}  // namespace netsem::soak
