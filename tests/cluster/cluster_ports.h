// What the tests of real netsemd clusters (netsemd_cluster_test,
// cluster_failure_test, client_resume_cluster_test) prepare before their
// servers start: a client and a Raft port for each server, no two the same,
// and each server's own copy of the cluster's secret. Header-only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>

#include "support/free_port.h"

namespace netsem::testing {

// A port below the kernel's ephemeral range, free on every address when
// picked. A port bound to 0 comes from that range, from which every outgoing
// connection of the tests running beside this one draws its local port: one
// took a server's Raft port (127.0.0.2:32795) between its pick and
// netsemd's bind ("Address already in use"). Below the range only a server
// binding it on purpose can take it.
inline std::uint16_t free_port_below_ephemeral() {
  int low = 32768;  // the default of net.ipv4.ip_local_port_range
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  if (low <= 2048) return test_support::free_loopback_port();
  static std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> pick(std::max(1024, low - 12000), low - 1);
  for (int tries = 0; tries < 200; ++tries) {
    const auto port = static_cast<std::uint16_t>(pick(random));
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_ANY);  // taken on any address: not free
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (free) return port;
  }
  return test_support::free_loopback_port();
}

// Fills `client` and `raft` with free ports, all distinct.
template <std::size_t N>
void pick_cluster_ports(std::array<std::uint16_t, N>& client, std::array<std::uint16_t, N>& raft) {
  std::set<std::uint16_t> taken;
  for (std::size_t i = 0; i < N; ++i) {
    for (std::uint16_t* port : {&client[i], &raft[i]}) {
      do {
        *port = free_port_below_ephemeral();
      } while (*port == 0 || taken.contains(*port));
      taken.insert(*port);
    }
  }
}

// Where server i (from 0) of a cluster under `dir` keeps its secret: the
// `secret_file` of its [cluster] section.
inline std::filesystem::path cluster_secret_file(const std::filesystem::path& dir, int i) {
  return dir / ("secret." + std::to_string(i + 1));
}

// Writes `secret` to the secret file of each of the first `servers`
// servers, readable by its owner only (netsemd refuses any other mode).
inline void write_cluster_secrets(const std::filesystem::path& dir, int servers, const std::string& secret) {
  for (int i = 0; i < servers; ++i) {
    const auto file = cluster_secret_file(dir, i);
    std::ofstream(file) << secret << "\n";
    ::chmod(file.c_str(), 0600);
  }
}

}  // namespace netsem::testing
