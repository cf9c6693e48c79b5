// PartitionProxy: network partitions between Raft servers on one host, for
// the failure tests. Each server listens on a bind address of its own
// (RaftOptions::bind_address, 127.0.1.N) while its peers reach it at its
// advertised address (127.0.0.N, the same port), where this proxy listens
// and forwards, from the sender's own address (a server checks the source
// of a connection against the host of the id it claims). The first bytes
// of every connection a libraft server opens are its handshake (libraft
// 0.15, uv_tcp_connect.c: protocol u64, the sender's id u64, the address
// length u64, the address; little-endian), so the proxy knows which server
// sent each connection and which one it goes to. A cut link between two
// servers stops every byte between them, both ways, without closing
// anything: packets that vanish, as when a cable is pulled, not a reset
// that would tell either side at once. Healing lets through what was held.
// Connections from anything else than a libraft server (no handshake) are
// held as if cut.
//
// Thread safety: cut(), isolate(), heal() and connections() from any
// thread; the destructor stops the proxy thread and closes every socket.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace netsem::raft::testing {

class PartitionProxy {
 public:
  struct Server {
    std::uint64_t id = 0;
    std::string advertised_ip;  // where peers connect: the proxy listens here
    std::string bind_ip;        // where the server listens: the proxy forwards here
    std::uint16_t port = 0;     // both
  };

  explicit PartitionProxy(std::vector<Server> servers);
  ~PartitionProxy();
  PartitionProxy(const PartitionProxy&) = delete;
  PartitionProxy& operator=(const PartitionProxy&) = delete;

  // False when a listener could not be opened (the reason in error()).
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Stops every byte between servers a and b (both ways) until heal().
  void cut(std::uint64_t a, std::uint64_t b);
  // Cuts every link of server `id`.
  void isolate(std::uint64_t id);
  // Every link works again.
  void heal();
  // Connections seen from server `from` to server `to` (identified by their
  // handshake), so a test can tell the proxy is in the path.
  std::uint64_t connections(std::uint64_t from, std::uint64_t to) const;

 private:
  struct Connection;
  void run();
  void wake();
  bool blocked(std::uint64_t a, std::uint64_t b) const;  // REQUIRES: mu_ held

  std::vector<Server> servers_;
  std::vector<int> listeners_;  // one per server, in servers_ order
  int wake_fd_ = -1;
  std::string error_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> cut_;                  // guarded by mu_: (low, high)
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> seen_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace netsem::raft::testing
