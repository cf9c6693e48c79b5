// TcpProxy: a loopback TCP proxy for tests, in a thread of the test process,
// that forwards bytes both ways between its clients and one target port and
// can be frozen: a frozen proxy stops reading and writing on every side and
// accepts no new connection, but keeps every socket open. That is a network
// that went silent (a cable pulled, a partition) without a FIN or a reset,
// made deterministic on 127.0.0.1.
//
// reset() breaks every connection at once with a TCP reset on both sides
// (a middlebox that dropped its state), while the proxy goes on accepting.
//
// from_target() is what the target said, for a test that needs an answer
// the client keeps to itself (RESUMABLE's session secret).
//
// Thread safety: freeze(), thaw(), reset() and port() from any thread; the
// destructor stops the thread and closes every socket.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace netsem::testing {

class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target`.
  explicit TcpProxy(std::uint16_t target);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // The port clients connect to; 0 when the proxy could not listen.
  std::uint16_t port() const { return port_; }
  // Stops every transfer; returns once the proxy thread no longer reads or
  // writes (so nothing sent after freeze() returns gets through).
  void freeze();
  // Resumes forwarding what was buffered and what arrives.
  void thaw();
  // Resets every proxied connection (RST to the client and to the target,
  // buffered bytes dropped); returns once they are closed. New connections
  // are proxied as before.
  void reset();
  // Every byte the target has sent through the proxy so far, all
  // connections', in the order the proxy read them.
  std::string from_target();

 private:
  void run();
  void wake();

  const std::uint16_t target_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool frozen_ = false;             // guarded by mutex_: what the test asked for
  bool thread_frozen_ = false;      // guarded by mutex_: what the thread obeys now
  std::uint64_t resets_asked_ = 0;  // guarded by mutex_
  std::uint64_t resets_done_ = 0;   // guarded by mutex_
  std::string from_target_;         // guarded by mutex_
  std::thread thread_;
};

}  // namespace netsem::testing
