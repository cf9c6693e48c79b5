// http::Listener: netsemd's HTTP listener, glue over GNU libmicrohttpd. It
// runs on threads of its own (one accepting, one per connection, so that a
// request waiting for the event loop holds up no other connection), never
// on the event loop's; every request is handed to a Handler (in netsemd,
// api::route over the server's Backend) and its Response written back.
//
// Why libmicrohttpd: GNU's embeddable C HTTP server, packaged in Debian
// (libmicrohttpd-dev) and used there by systemd-journal-remote; it has hard
// limits on connections (total and per peer address), on memory per
// connection (the request line and headers must fit in it: a larger one is
// answered 414 or 431 and closed) and on idle time, so no HTTP client can
// reach the semaphore loop or grow netsemd's memory without bound.
//
// What the listener decides itself: a peer the Admit function refuses is
// closed at accept, before a byte is read (allowed_networks), and so is one
// past the connection limits (total, per address), counted here rather than
// by MHD: libmicrohttpd 0.9.75's own total limit, once reached after a
// per-address refusal, could leave the listener accepting nothing after the
// connections had gone (HttpHostile.ConnectionsBeyondTheLimits... saw it).
// The counts are exact because a connection is counted when it is
// accepted, before MHD is given it, by the one thread that accepts: MHD's
// own thread starts a connection later (a burst of connects was once
// drained against counts that had not moved: 200 held from one address).
// Each counted connection is kept by its descriptor until MHD's
// NOTIFY_CLOSED for it (which comes before MHD closes the descriptor), or
// MHD_add_connection refuses it. MHD 0.9.75 drops a connection before
// NOTIFY_STARTED without a word only when it cannot allocate its memory
// pool (or past its backstop, MHD_OPTION_CONNECTION_LIMIT at twice the
// total, which exact counts never reach); such an entry is let go when
// accept() returns its descriptor number again, since the kernel reuses
// only a closed number. MHD's accept policy callback is not used (the
// connection is counted by then). That thread is the
// listener's own, not MHD's (which is started without a listening socket
// and given each connection): while the process is out of descriptors,
// MHD 0.9.75 with no connection open retries accept() at once, a spin of
// its thread for as long as a peer waits (40-96% of a core, measured);
// this one tries again every 100 ms, and the peer is served once a
// descriptor is free. The request
// target is passed raw (MHD's unescaping is turned off: api::route decodes
// names so that %2F stays inside one path segment); a request that
// announces a body (Content-Length above 0, or Transfer-Encoding) is
// answered 413 without reading it.
//
// Thread safety: start() and stop() from one thread (the event loop's);
// Handler and Admit are called from the listener's threads, several at once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "api/router.h"
#include "common/unique_fd.h"
#include "netsem/status.h"

struct MHD_Daemon;

namespace netsem::http {

struct Limits {
  unsigned connections = 256;                  // open HTTP connections, all peers
  unsigned connections_per_address = 64;       // from one peer address
  std::size_t memory_per_connection = 32768;   // request line + headers (and the buffer for the response's head)
  unsigned idle_timeout_s = 10;                // a connection with no progress for this long is closed
  std::size_t thread_stack_bytes = 256 << 10;  // of each connection's thread
};

class Listener {
 public:
  using Handler = std::function<api::Response(const api::Request&)>;
  // Whether a peer (IPv6, or IPv4-mapped) may connect.
  using Admit = std::function<bool(const std::array<std::uint8_t, 16>&)>;

  // Listens on `address` (IPv4 or IPv6 text) and `port` (0: any free port).
  // kInvalidArgument for a bad address, kIoError when it cannot listen
  // (the message says why).
  static Result<std::unique_ptr<Listener>> start(const std::string& address, std::uint16_t port, const Limits& limits,
                                                 Handler handler, Admit admit);
  // Stops (see stop()).
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Closes the listening socket and every connection, waiting for the
  // handlers running now to return (they must not wait for the thread that
  // calls stop()). Idempotent.
  void stop();
  // Lowers the connection limits (total, and per address) to at most `n`:
  // the server gives HTTP only its share of the descriptors. Any thread.
  void limit_connections(unsigned n);
  // The port actually bound.
  std::uint16_t port() const { return port_; }

 private:
  Listener() = default;

  struct Callbacks;  // MHD's C callbacks, in listener.cc
  // The accepting thread's loop: each connection the limits admit is given
  // to MHD; out of descriptors, it waits 100 ms between tries. Ends when
  // stop() writes wake_fd_.
  void accept_loop();
  // Counts the connection on `fd` from `peer` if the limits leave room for
  // it (false: they do not, and it is to be closed).
  bool take(int fd, const std::array<std::uint8_t, 16>& peer);
  // Uncounts the connection on `fd`, if counted; release_locked with
  // count_mutex_ held.
  void release(int fd);
  void release_locked(int fd);
  Handler handler_;
  Admit admit_;
  Limits limits_;
  std::mutex count_mutex_;
  // Every connection given to MHD and not yet closed, by descriptor, and
  // how many of them each peer address holds; guarded by count_mutex_.
  std::map<int, std::array<std::uint8_t, 16>> held_;
  std::map<std::array<std::uint8_t, 16>, unsigned> held_by_address_;
  MHD_Daemon* daemon_ = nullptr;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // an eventfd: stop() ends accept_loop through it
  std::thread accept_thread_;
  std::uint16_t port_ = 0;
};

}  // namespace netsem::http
