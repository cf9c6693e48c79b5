// RaftPort: the Raft port's listen side, and the shims on libraft's TCP
// transport (raft_uv_tcp, libraft 0.15). libraft's own listener reads the
// handshake of an accepted connection (protocol version, the id its sender
// claims, the sender's address) with no time limit and no bound on how many
// wait, and takes any connection that sends one: a host that reaches the port
// could hold netsemd's descriptors open for ever. RaftPort replaces the
// transport's listen: its own uv_tcp listener on the Raft address checks the
// source of each connection at accept (admits_source: the host of a server
// the node knows, or raft_allowed_networks), holds at most
// max_pending_per_source connections of a source and max_pending in all
// waiting for their handshake (the excess is closed at once), reads the
// handshake within handshake_timeout (closed after), checks that the claimed
// id may come from that source (admits_claim), and only then hands the
// stream to libraft's accept callback, as libraft's listener would, unless
// that source has max_open_per_claim streams claiming that id (or
// max_open_per_source in all) handed over and still open: libraft keeps
// every stream it is given (a uvServer each, no limit), and closes one only
// when its peer ends it or sends what is no message. The streams handed
// over are found among the loop's handles (uv_walk) at each handshake, as
// libraft closes and frees them itself; they get TCP keepalive, so that one
// whose peer host is gone ends. Every refusal is counted by reason and
// logged (warning) through a LogRateLimit per source and reason: the first
// at once, the rest of each 10 s as one line with their count. The
// transport's connect is RaftPort's too: as libraft's (connect, then
// write the handshake), but from a socket bound to this server's own host
// (source_host), so that a peer sees the connection come from the host of
// the id it claims, on loopback too (libraft binds nothing: between two
// loopback addresses its connections left from 127.0.0.1). Every stream
// either side hands to libraft has TCP_NODELAY (raft_uv_tcp leaves Nagle's algorithm
// on: a small message behind an unacknowledged one waited for the peer's
// delayed ACK, about 40 ms: docs/benchmarks.md, "The cluster's second run").
// The transport's close closes the listener and the connections still in
// their handshake, either way, before libraft's own close, and reports the transport
// closed only once all of them are.
//
// Everything but construction and destruction runs on the thread of the
// loop (the raft thread).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct raft_uv_transport;
struct uv_loop_s;

namespace netsem::raft {

// Why the Raft port closed a connection before libraft took it.
enum class PortRefusal : std::size_t {
  kHost,       // its source is no known server's host, nor allowed
  kId,         // the id its handshake claims may not come from its source
  kHandshake,  // its handshake is not libraft's (protocol, address length)
  kTimeout,    // no whole handshake within handshake_timeout
  kPending,    // too many of its source's (or in all) wait for their handshake
  kStreams,    // its source has as many streams open with libraft for that id (or in all) as it may
};
inline constexpr std::size_t kPortRefusals = 6;
// "host", "id", "handshake", "timeout", "pending", "streams" (the metric's
// reason label).
std::string_view port_refusal_name(PortRefusal reason);
using PortRefusals = std::array<std::uint64_t, kPortRefusals>;

struct RaftPortOptions {
  std::string listen_address;  // "a.b.c.d:port" (the bind address when set, else the Raft address)
  // A peer writes its handshake as soon as its connection is made
  // (uv_tcp_connect.c): it arrives one round trip after the accept.
  std::chrono::milliseconds handshake_timeout{5000};
  std::size_t max_pending_per_source = 4;
  std::size_t max_pending = 32;
  // Streams handed to libraft and still open: at most max_open_per_claim of
  // one source claiming one id, max_open_per_source of one source in all. A
  // peer has one connection to this server (libraft's uvClient); a second
  // one while this side has not yet seen the first end (its host crashed
  // and came back: keepalive ends the old one).
  std::size_t max_open_per_claim = 2;
  std::size_t max_open_per_source = 16;
  // TCP keepalive on the streams handed over: libraft only reads them
  // (its answers go on its own connection), so a stream whose peer host is
  // gone would never end. It ends keepalive_idle + keepalive_count x
  // keepalive_interval after the last byte from the peer (30 s).
  std::chrono::seconds keepalive_idle{15};
  std::chrono::seconds keepalive_interval{5};
  int keepalive_count = 3;
  // The IPv4 host ("a.b.c.d") connections to the other servers leave from
  // (the Raft address's); empty, or not an address of this machine (a
  // translated one: then logged once): the kernel chooses.
  std::string source_host;
  // Whether a connection from `source` (IPv4, host order) is read at all.
  std::function<bool(std::uint32_t source)> admits_source;
  // Whether a connection from `source` may speak as server `id`.
  std::function<bool(std::uint32_t source, std::uint64_t id)> admits_claim;
};

class RaftPort {
 public:
  // Installs the port on `transport` (after raft_uv_tcp_init, before
  // raft_uv_init). The port must outlive the transport's close (destroy it
  // once the loop ran to its end).
  RaftPort(raft_uv_transport* transport, uv_loop_s* loop, RaftPortOptions options);
  ~RaftPort();
  RaftPort(const RaftPort&) = delete;
  RaftPort& operator=(const RaftPort&) = delete;

  // The refusals since start, by reason (index: PortRefusal).
  PortRefusals refused() const;
  // Why the listen failed ("Address already in use"), if it did: libraft's
  // raft_start only says "I/O error".
  std::optional<std::string> listen_failure() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace netsem::raft
