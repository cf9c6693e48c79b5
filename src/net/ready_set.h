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
// while the peer lags, one when it caught up), or closes.
//
// The set's descriptor sits in Asio's reactor (edge-triggered) with one
// reactor operation of ours on it, whose perform step is the set's
// epoll_wait(0): a round costs Asio's wait and that one epoll_wait, however
// many sockets are ready, and a lone client's request costs what a socket
// watched by Asio would (wait, epoll_wait, recv, send) with no re-arm. After
// a round the operation waits again with no system call when the round left
// nothing ready that no wake-up would announce: the kernel wakes the set's
// descriptor whenever a socket in it gets input or room, but not for a
// socket that stays ready unread (a read that filled the buffer, or took
// the last bytes before an end of input: the handler says so), nor for one
// whose interest a round widened, nor for the sockets past kMaxEvents. After such a round the set's registration is
// re-armed (one epoll_ctl in Asio), which looks at the set afresh. A change
// of interest between rounds re-registers the socket (EPOLL_CTL_DEL and ADD:
// an ADD wakes the set's watchers when the socket is ready, a MOD of a
// socket the set listed in its last round does not). Each round returns to
// the io_context, so a peer that keeps a socket ready never starves the
// timers or the other descriptors.
//
// This reaches into Asio's reactor (asio::detail::epoll_reactor: start_op,
// reactor_op), whose interface is Asio 1.22's (Debian 12); the header
// refuses other versions at compile time rather than misuse them.
//
// API: open() the set, add() each socket with the key that names its
// session, modify() its interest, remove() it before closing it (a copy of
// the descriptor elsewhere, e.g. a forked child's, would otherwise keep it in
// the set). start() calls `on_ready(key, events)` for each ready socket (at
// most kMaxEvents per round; the rest, still ready, come in the next round),
// which returns whether the socket may still be ready for what it is watched
// for (it read less than was there), and then `on_round_end()`, round after
// round, until stop(). A key met in a round may name a socket removed
// earlier in the same round: the handler looks it up. A round serves the
// ready sockets in the kernel's order, which is not strictly the order their
// bytes arrived in: a socket just served stays at the head of the kernel's
// ready list until the next wait looks at it (level-triggered). Nothing
// orders two connections' requests anyway; every ready socket is served in
// every round, so none waits on others.
//
// Thread safety: event-loop thread only.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <asio.hpp>
#include <asio/detail/reactor.hpp>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/unique_fd.h"
#include "netsem/status.h"

#if ASIO_VERSION < 102200 || ASIO_VERSION >= 102800
#error "ReadySet drives Asio 1.22-1.27's epoll_reactor (start_op, reactor_op): check its use against this Asio"
#endif

namespace netsem::server {

class ReadySet {
 public:
  // Input, and the peer's end of input (EPOLLRDHUP), so that a handler can
  // tell that a read which took the last bytes left an end of input unread.
  static constexpr std::uint32_t kRead = EPOLLIN | EPOLLRDHUP;
  static constexpr std::uint32_t kWrite = EPOLLOUT;
  static constexpr int kMaxEvents = 256;

  // Returns true when the socket may still be ready for what it is watched
  // for after the call (a read that filled its buffer, or that took data
  // while `events` said the peer had ended its input: EPOLLRDHUP, EPOLLHUP).
  using ReadyHandler = std::function<bool(std::uint64_t key, std::uint32_t events)>;

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
  struct RoundOp;
  ReadySet(asio::io_context& io, UniqueFd epoll);
  // Queues the round operation on the set's descriptor; `rearm`: re-arm
  // the registration first (one epoll_ctl), for a set that may be ready
  // with no wake-up to come.
  void wait(bool rearm);
  // The round operation completed: serves the `ready_` events it took.
  void round(const asio::error_code& error);

  UniqueFd epoll_;
  asio::detail::reactor& reactor_;
  asio::detail::reactor::per_descriptor_data watch_ = nullptr;  // epoll_ in Asio's reactor
  RoundOp* op_ = nullptr;  // owned; left to itself when the set goes while it is queued
  bool op_queued_ = false;
  ReadyHandler on_ready_;
  std::function<void()> on_round_end_;
  std::array<epoll_event, kMaxEvents> events_{};
  int ready_ = 0;          // events_ taken by the last perform step
  bool in_round_ = false;  // on_ready/on_round_end are running
  bool again_ = false;     // this round left the set maybe ready with no wake-up to come
  bool stopped_ = false;
};

}  // namespace netsem::server
