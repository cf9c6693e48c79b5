// The floor: a raw loopback echo server with netsemd's shape (one thread,
// epoll, non-blocking sockets, one read per readiness event and one write
// per read) that answers every line it receives with one fixed-size line
// and does nothing else. Driven by the same generator with the same request
// lines as netsemd, it measures what the kernel and the loopback cost for
// this traffic: the physical limit a semaphore server can approach.
//
// `netsem-bench --serve-floor` runs it in the foreground; `--target floor`
// without `--port` starts it in a child process for the length of a run.
//
// Thread safety: serve_floor() owns its thread until the process ends.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "connection.h"

namespace netsem::bench {

// The answer to every line: the size of a typical grant ("<tag> OK <fence>").
inline constexpr std::string_view kFloorReply = "f OK 123456\n";

// Listens on `endpoint` (port 0: any free port), calls `listening` with the
// port, then serves forever. Returns only when it cannot listen, with a
// message in `error`.
void serve_floor(const Endpoint& endpoint, const std::function<void(std::uint16_t port)>& listening,
                 std::string& error);

// A floor server in a child process, stopped (SIGKILL) by the destructor.
class FloorChild {
 public:
  // Forks a child serving on `endpoint`; on failure pid() is -1 and
  // `error` says why.
  FloorChild(const Endpoint& endpoint, std::string& error);
  ~FloorChild();
  FloorChild(const FloorChild&) = delete;
  FloorChild& operator=(const FloorChild&) = delete;

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace netsem::bench
