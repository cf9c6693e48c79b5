// A loopback TCP port that was free a moment ago, for a test that must name a
// port before the program listening on it starts (a Prometheus, a Redis, an
// address where nothing listens). The port is bound to 0, read back and
// closed: another process could take it in between, which on 127.0.0.1 in a
// test run is rare enough; prefer port 0 wherever the program can report its
// own choice (netsemd logs its ports).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

namespace netsem::test_support {

// 0 when no socket could be bound.
inline std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace netsem::test_support
