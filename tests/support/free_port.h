// Free TCP ports for a test that must name a port before the program
// listening on it starts (netsemd's client, Raft, peer or metrics port, a
// Prometheus, a Redis), or an address where nothing listens. Such a port is
// picked, checked free and closed: another process could take it before the
// program binds it. Prefer port 0 wherever the program can report its own
// choice (netsemd logs its ports).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <random>
#include <set>

namespace netsem::test_support {

// A port from the kernel's ephemeral range, free on 127.0.0.1 a moment ago;
// 0 when no socket could be bound. Only for an address where nothing is to
// listen: a server's port comes from free_port_below_ephemeral().
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

// A port below the kernel's ephemeral range, free on every address when
// picked and not handed out before in this process (a test's ports are
// distinct); 0 when no socket could be made. A port bound to 0 comes from that
// range, from which every outgoing connection of the tests running beside
// this one draws its local port: one took a server's Raft port
// (127.0.0.2:32795) between its pick and netsemd's bind ("Address already in
// use"). Below the range only a server binding it on purpose can take it.
inline std::uint16_t free_port_below_ephemeral() {
  int low = 32768;  // the default of net.ipv4.ip_local_port_range
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  if (low <= 2048) return free_loopback_port();
  static std::mutex mutex;
  static std::mt19937 random(std::random_device{}());
  static std::set<std::uint16_t> given;
  const std::scoped_lock lock(mutex);
  std::uniform_int_distribution<int> pick(std::max(1024, low - 12000), low - 1);
  for (int tries = 0; tries < 200; ++tries) {
    const auto port = static_cast<std::uint16_t>(pick(random));
    if (given.contains(port)) continue;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);  // taken on any address: not free
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (free) {
      given.insert(port);
      return port;
    }
  }
  return free_loopback_port();
}

}  // namespace netsem::test_support
