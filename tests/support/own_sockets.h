// This process's TCP sockets connected to a loopback port, and the keepalive
// options set on one: a client library's I/O thread runs in the test's own
// process, so a test reads the options the client set on its connection
// (getsockopt) without a hook in the library.
//
// Header-only; Linux (/proc/self/fd). The descriptors are the process's
// own, not duplicated: read them while the connection cannot change.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace netsem::test_support {

// The descriptors of this process's IPv4 sockets whose peer is
// 127.0.0.1:`port`.
inline std::vector<int> sockets_connected_to(std::uint16_t port) {
  std::vector<int> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    const int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_in peer{};
    socklen_t size = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &size) != 0 || peer.sin_family != AF_INET) continue;
    if (ntohs(peer.sin_port) == port && ntohl(peer.sin_addr.s_addr) == INADDR_LOOPBACK) found.push_back(fd);
  }
  return found;
}

// The keepalive options of a socket as getsockopt reads them (-1: unread).
struct KeepAlive {
  int on = -1;  // SO_KEEPALIVE
  int idle = -1;
  int interval = -1;
  int count = -1;
  int user_timeout_ms = -1;  // TCP_USER_TIMEOUT
};

inline KeepAlive keep_alive_of(int fd) {
  KeepAlive options;
  const auto read = [fd](int level, int name, int& value) {
    socklen_t size = sizeof value;
    if (::getsockopt(fd, level, name, &value, &size) != 0) value = -1;
  };
  read(SOL_SOCKET, SO_KEEPALIVE, options.on);
  read(IPPROTO_TCP, TCP_KEEPIDLE, options.idle);
  read(IPPROTO_TCP, TCP_KEEPINTVL, options.interval);
  read(IPPROTO_TCP, TCP_KEEPCNT, options.count);
  read(IPPROTO_TCP, TCP_USER_TIMEOUT, options.user_timeout_ms);
  return options;
}

}  // namespace netsem::test_support
