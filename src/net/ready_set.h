// ReadySet: the session sockets in one level-triggered epoll set, each
// registered once per connection, watched from the Asio event loop through
// the set's own descriptor.
//
// Why: a readiness wait through Asio (socket::async_wait) re-arms the socket
// in Asio's edge-triggered epoll set with one epoll_ctl per wait, that is
// one system call per request (docs/benchmarks.md). Here a socket stays
// registered for input from accept to close; a readable socket is reported
// again until it is read (level-triggered), so nothing is re-armed per
// request. Interest changes only when a session stops reading (a LIST
// streams), starts waiting for its peer to take output (EPOLLOUT, one change
// while the peer lags, one when it caught up), or closes. The set itself is
// one descriptor in Asio's reactor: one wait and one epoll_wait per batch of
// ready sockets, however many there are (a batch of one, a lone client's
// request, pays one system call more than a socket watched by Asio).
//
// API: open() the set, add() each socket with the key that names its
// session, modify() its interest, remove() it before closing it (a copy of
// the descriptor elsewhere, e.g. a forked child's, would otherwise keep it in
// the set). start() calls `on_ready(key, events)` for each ready socket (at
// most kMaxEvents per round; the rest, still ready, come in the next round)
// and then `on_round_end()`, round after round, until stop(). A key met in a
// round may name a socket removed earlier in the same round: the handler
// looks it up. A round serves the ready sockets in the kernel's order, which
// is not strictly the order their bytes arrived in: a socket just served
// stays at the head of the kernel's ready list until the next wait looks at
// it (level-triggered). Nothing orders two connections' requests anyway;
// every ready socket is served in every round, so none waits on others.
//
// Thread safety: event-loop thread only.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/unique_fd.h"
#include "netsem/status.h"

namespace netsem::server {

class ReadySet {
 public:
  static constexpr std::uint32_t kRead = EPOLLIN;
  static constexpr std::uint32_t kWrite = EPOLLOUT;
  static constexpr int kMaxEvents = 256;

  using ReadyHandler = std::function<void(std::uint64_t key, std::uint32_t events)>;

  // kIoError when the kernel refuses an epoll set.
  static Result<std::unique_ptr<ReadySet>> open(asio::io_context& io);
  ~ReadySet();
  ReadySet(const ReadySet&) = delete;
  ReadySet& operator=(const ReadySet&) = delete;

  // Watches `fd` for `events` (kRead, kWrite, both, or 0 for neither: then
  // only errors and hang-ups, which epoll always reports). False with errno
  // set when the kernel refuses.
  [[nodiscard]] bool add(int fd, std::uint64_t key, std::uint32_t events);
  [[nodiscard]] bool modify(int fd, std::uint64_t key, std::uint32_t events);
  void remove(int fd);

  // Begins the rounds. REQUIRES: called once.
  void start(ReadyHandler on_ready, std::function<void()> on_round_end);
  // No more rounds (a round in progress finishes); the set's wait leaves
  // the io_context, which can then run out.
  void stop();

 private:
  ReadySet(asio::io_context& io, UniqueFd epoll);
  void wait();
  void round();

  UniqueFd epoll_;
  asio::posix::stream_descriptor watch_;  // epoll_ as seen by Asio's reactor (not owned)
  ReadyHandler on_ready_;
  std::function<void()> on_round_end_;
  std::array<epoll_event, kMaxEvents> events_{};
  bool stopped_ = false;
};

}  // namespace netsem::server
