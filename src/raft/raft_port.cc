// RaftPort (raft_port.h): the Raft port's listener and handshake reader, the
// connect that binds its source, and the shims on raft_uv_tcp's init and close. The transport calls
// its functions with nothing but itself (and a connect request), so each
// port is found by its transport, and each connect's callback by its request.
#include "raft/raft_port.h"

#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// libraft's headers declare C functions without extern "C" of their own.
extern "C" {
#include <raft.h>
#include <raft/uv.h>
}

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/log.h"

namespace netsem::raft {

std::string_view port_refusal_name(PortRefusal reason) {
  switch (reason) {
    case PortRefusal::kHost:
      return "host";
    case PortRefusal::kId:
      return "id";
    case PortRefusal::kHandshake:
      return "handshake";
    case PortRefusal::kTimeout:
      return "timeout";
    case PortRefusal::kPending:
      return "pending";
    case PortRefusal::kStreams:
      return "streams";
  }
  return "unknown";
}

namespace {

// uv_tcp.h: the handshake's protocol version. The handshake is three
// little-endian 64-bit words (protocol, the sender's id, the length of its
// address, NUL included and padded to 8), then the address.
constexpr std::uint64_t kHandshakeProtocol = 1;
// An address is "a.b.c.d:port" (uvIpParse): 24 bytes padded. Anything
// longer than this is no libraft's.
constexpr std::uint64_t kMaxAddressLength = 256;
// The most (source, reason) pairs logged: the rest are only counted.
constexpr std::size_t kMaxLogged = 1024;
// One line per source and reason in this window; the rest are counted and
// said once it is over, as the cluster's refusals of peer lines are.
constexpr std::chrono::seconds kLogWindow{10};

std::string ipv4_text(std::uint32_t host_order) {
  const in_addr in{htonl(host_order)};
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &in, text, sizeof text);
  return text;
}

// "a.b.c.d:port" (port > 0); nullopt for anything else.
std::optional<sockaddr_in> parse_address(std::string_view address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(address.data() + colon + 1, address.data() + address.size(), port);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  if (ec != std::errc() || end != address.data() + address.size() || port == 0 || port > 65535 ||
      ::inet_pton(AF_INET, std::string(address.substr(0, colon)).c_str(), &in.sin_addr) != 1) {
    return std::nullopt;
  }
  in.sin_port = htons(static_cast<std::uint16_t>(port));
  return in;
}

void set_no_delay(uv_stream_t* stream) {
  // raft_uv_tcp's streams are uv_tcp_t; a failure leaves Nagle on (slower, not wrong).
  if (stream != nullptr && stream->type == UV_TCP) uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(stream), 1);
}

// Keepalive probes after `idle` without a byte from the peer, `count` of
// them `interval` apart; a failure leaves the stream without (as libraft had it).
void set_keepalive(uv_tcp_t* tcp, const RaftPortOptions& o) {
  if (uv_tcp_keepalive(tcp, 1, static_cast<unsigned>(o.keepalive_idle.count())) != 0) return;
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(tcp), &fd) != 0) return;
  const int interval = static_cast<int>(o.keepalive_interval.count());
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &o.keepalive_count, sizeof o.keepalive_count);
}

}  // namespace

struct RaftPort::Impl {
  // A connection accepted and not yet handed to libraft: waiting for its
  // handshake. Deleted once both its handles are closed (or, handed over,
  // once its timer is: the stream is libraft's then).
  struct Incoming {
    Impl* port = nullptr;
    uv_tcp_t* tcp = nullptr;  // raft_malloc'd: libraft frees it with raft_free once it has it
    uv_timer_t timer{};
    std::uint32_t source = 0;
    std::array<std::uint64_t, 3> preamble{};
    std::vector<char> address;  // its length, and a NUL of ours
    std::size_t nread = 0;
    bool in_address = false;
    int open_handles = 0;
  };
  // A connection to a peer being made for libraft (its connect request):
  // the connect, then the handshake written. Deleted when libraft is told.
  struct Outgoing {
    Impl* port = nullptr;
    raft_uv_connect* req = nullptr;
    uv_tcp_t* tcp = nullptr;  // raft_malloc'd: libraft frees it with raft_free once it has it
    uv_connect_t connect{};
    uv_write_t write{};
    std::vector<char> handshake;
    int status = 0;  // what libraft is told when it ends before it is made
    bool aborting = false;
  };

  // A stream handed to libraft, for as long as it is among the loop's
  // handles as libraft's (prune_handed): the same address, libraft's
  // uvServer as its data, the same descriptor, not closing.
  struct Handed {
    uv_handle_t* stream = nullptr;
    void* server = nullptr;
    uv_os_fd_t fd = -1;
    std::uint32_t source = 0;
    std::uint64_t id = 0;
    bool seen = false;
  };
  // The warnings of one source and reason.
  struct RefusalLog {
    LogRateLimit limit{1, kLogWindow};
    std::string last;  // the last refusal it suppressed
  };

  raft_uv_transport* transport = nullptr;
  uv_loop_t* loop = nullptr;
  RaftPortOptions options;
  // The transport's own functions (raft_uv_tcp's).
  int (*inner_init)(raft_uv_transport*, raft_id, const char*) = nullptr;
  void (*inner_close)(raft_uv_transport*, raft_uv_transport_close_cb) = nullptr;
  // This server's id and Raft address, as libraft gave them to the
  // transport's init: what its handshake says.
  raft_id own_id = 0;
  std::string own_address;
  raft_uv_accept_cb accept_cb = nullptr;  // libraft's (uv_recv.c)
  raft_uv_transport_close_cb close_cb = nullptr;

  uv_tcp_t listener{};
  bool listener_open = false;
  std::optional<std::string> listen_failed;
  std::set<Incoming*> pending;
  std::set<Outgoing*> outgoing;
  bool unbound_logged = false;
  std::unordered_map<std::uint32_t, std::size_t> pending_from;
  // Handles of ours not yet closed: each Incoming alive, each refused stream
  // closing, the listener.
  std::size_t alive = 0;
  bool closing = false, inner_closed = false, close_reported = false;
  PortRefusals refused{};
  std::vector<Handed> handed;
  std::map<std::pair<std::uint32_t, PortRefusal>, RefusalLog> logs;
  // Says what `logs` suppressed once their window is over; open (counted in
  // `alive`) from the first refusal suppressed to the close.
  uv_timer_t log_timer{};
  bool log_timer_open = false;

  static void on_connection(uv_stream_t* server, int status);
  static void on_alloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_timeout(uv_timer_t* timer);
  static void on_incoming_handle_closed(uv_handle_t* handle);
  static void on_refused_stream_closed(uv_handle_t* handle);
  static void on_listener_closed(uv_handle_t* handle);
  static void on_inner_closed(raft_uv_transport* transport);
  static void on_connected(uv_connect_t* connect, int status);
  static void on_handshake_written(uv_write_t* write, int status);
  static void on_outgoing_closed(uv_handle_t* handle);
  static void on_log_timer(uv_timer_t* timer);
  static void on_log_timer_closed(uv_handle_t* handle);

  int listen(raft_uv_accept_cb cb);
  int connect(raft_uv_connect* req, const char* to, raft_uv_connect_cb cb);
  // A socket bound to options.source_host (any port), or -1: unbound.
  int bound_socket();
  void abort(Outgoing* o);
  void close(raft_uv_transport_close_cb cb);
  // Counts and logs a refusal of a connection from `source`.
  void refuse(PortRefusal reason, std::uint32_t source, const std::string& detail);
  // Closes an incoming connection still in its handshake.
  void abort(Incoming* incoming);
  void forget_pending(Incoming* incoming);
  void handshake_read(Incoming* incoming);
  // Drops from `handed` the streams libraft has closed since.
  void prune_handed();
  // Writes the refusals `logs` suppressed in windows over at `now` (all of
  // them when `all`) and arms log_timer for the next.
  void flush_logs(bool all);
  void report(std::uint32_t source, RefusalLog& log, std::uint64_t count);
  // Reports the transport closed once it is, and ours too. Last thing its
  // caller does: the report can end the node, and the port with it.
  void maybe_closed();
};

namespace {

// The ports by transport.
struct Registry {
  std::mutex mu;
  std::unordered_map<raft_uv_transport*, RaftPort::Impl*> ports;
};
Registry& registry() {
  static Registry r;
  return r;
}

RaftPort::Impl* port_of(raft_uv_transport* t) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.ports.at(t);
}

int port_listen(raft_uv_transport* t, raft_uv_accept_cb cb) {
  return port_of(t)->listen(cb);
}

void port_close(raft_uv_transport* t, raft_uv_transport_close_cb cb) {
  port_of(t)->close(cb);
}

int port_init(raft_uv_transport* t, raft_id id, const char* address) {
  RaftPort::Impl* port = port_of(t);
  port->own_id = id;
  port->own_address = address;
  return port->inner_init == nullptr ? 0 : port->inner_init(t, id, address);
}

int port_connect(raft_uv_transport* t, raft_uv_connect* req, raft_id, const char* address, raft_uv_connect_cb cb) {
  return port_of(t)->connect(req, address, cb);
}

}  // namespace

RaftPort::RaftPort(raft_uv_transport* transport, uv_loop_s* loop, RaftPortOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->transport = transport;
  impl_->loop = loop;
  impl_->options = std::move(options);
  impl_->inner_init = transport->init;
  impl_->inner_close = transport->close;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    r.ports[transport] = impl_.get();
  }
  transport->init = port_init;
  transport->listen = port_listen;
  transport->connect = port_connect;
  transport->close = port_close;
}

RaftPort::~RaftPort() {
  assert(impl_->alive == 0);
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.ports.erase(impl_->transport);
}

PortRefusals RaftPort::refused() const {
  return impl_->refused;
}

std::optional<std::string> RaftPort::listen_failure() const {
  return impl_->listen_failed;
}

int RaftPort::Impl::listen(raft_uv_accept_cb cb) {
  accept_cb = cb;
  const std::string& address = options.listen_address;
  const std::optional<sockaddr_in> parsed = parse_address(address);
  if (!parsed) {
    listen_failed = "'" + address + "' is not a.b.c.d:port";
    return RAFT_INVALID;
  }
  const sockaddr_in in = *parsed;
  if (int rv = uv_tcp_init(loop, &listener); rv != 0) {
    listen_failed = std::strerror(-rv);
    return RAFT_IOERR;
  }
  listener.data = this;
  listener_open = true;
  ++alive;
  // libuv sets SO_REUSEADDR, as libraft's listener had it. A backlog of 64
  // (libraft's was 1): the connections of every member at once after a
  // restart are no reason to drop a SYN.
  int rv = uv_tcp_bind(&listener, reinterpret_cast<const sockaddr*>(&in), 0);
  if (rv == 0) rv = uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 64, on_connection);
  if (rv != 0) {
    listen_failed = std::strerror(-rv);
    return RAFT_IOERR;
  }
  return 0;
}

// libraft's connect (uv_tcp_connect.c, UvTcpConnect) with the socket bound
// to this server's host first: the peer's Raft port matches the source of
// a connection to the host of the id it claims, and a connection between
// two loopback addresses would leave from 127.0.0.1 (libraft binds
// nothing). Then the same: connect, write the handshake (protocol 1, this
// server's id, the length of its address with its NUL padded to 8, the
// address), and only then hand the stream to libraft; any failure before is
// RAFT_NOCONNECTION (libraft tries again later), the transport's close
// RAFT_CANCELED, as libraft's own connect says them.
int RaftPort::Impl::connect(raft_uv_connect* req, const char* to, raft_uv_connect_cb cb) {
  assert(!closing);
  const std::optional<sockaddr_in> peer = parse_address(to);
  if (!peer) return RAFT_NOCONNECTION;
  auto* tcp = static_cast<uv_tcp_t*>(raft_malloc(sizeof(uv_tcp_t)));
  if (tcp == nullptr) return RAFT_NOMEM;
  uv_tcp_init(loop, tcp);
  ++alive;
  if (const int fd = bound_socket(); fd >= 0 && uv_tcp_open(tcp, fd) != 0) ::close(fd);
  auto* o = new Outgoing;
  o->port = this;
  o->req = req;
  o->tcp = tcp;
  tcp->data = o;
  o->connect.data = o;
  o->write.data = o;
  const std::size_t padded = (own_address.size() + 1 + 7) / 8 * 8;
  o->handshake.assign(3 * sizeof(std::uint64_t) + padded, '\0');
  const std::uint64_t preamble[3] = {htole64(kHandshakeProtocol), htole64(own_id), htole64(padded)};
  std::memcpy(o->handshake.data(), preamble, sizeof preamble);
  std::memcpy(o->handshake.data() + sizeof preamble, own_address.data(), own_address.size());
  req->cb = cb;
  if (uv_tcp_connect(&o->connect, tcp, reinterpret_cast<const sockaddr*>(&*peer), on_connected) != 0) {
    delete o;
    tcp->data = this;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_refused_stream_closed);
    return RAFT_NOCONNECTION;
  }
  outgoing.insert(o);
  return 0;
}

int RaftPort::Impl::bound_socket() {
  if (options.source_host.empty()) return -1;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  if (::inet_pton(AF_INET, options.source_host.c_str(), &from.sin_addr) != 1) return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // The port is chosen at the connect, per destination, as without a bind.
  const int on = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&from), sizeof from) == 0) return fd;
  const int err = errno;
  ::close(fd);
  if (!unbound_logged) {
    unbound_logged = true;
    spdlog::warn(
        "raft: connections to the other servers' Raft ports cannot leave from {} ({}): they leave from an address "
        "the kernel chooses, which the other servers refuse unless it is in their raft_allowed_networks",
        options.source_host, std::strerror(err));
  }
  return -1;
}

void RaftPort::Impl::on_connected(uv_connect_t* connect, int status) {
  Outgoing* o = static_cast<Outgoing*>(connect->data);
  if (o->aborting) return;  // its close says it
  Impl* self = o->port;
  if (status != 0) {
    o->status = RAFT_NOCONNECTION;
    self->abort(o);
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(o->tcp);
  set_no_delay(stream);
  const uv_buf_t buf = uv_buf_init(o->handshake.data(), static_cast<unsigned>(o->handshake.size()));
  if (uv_write(&o->write, stream, &buf, 1, on_handshake_written) != 0) {
    o->status = RAFT_NOCONNECTION;
    self->abort(o);
  }
}

void RaftPort::Impl::on_handshake_written(uv_write_t* write, int status) {
  Outgoing* o = static_cast<Outgoing*>(write->data);
  if (o->aborting) return;
  Impl* self = o->port;
  if (status != 0) {
    o->status = RAFT_NOCONNECTION;
    self->abort(o);
    return;
  }
  self->outgoing.erase(o);
  --self->alive;
  raft_uv_connect* req = o->req;
  auto* stream = reinterpret_cast<uv_stream_t*>(o->tcp);
  delete o;
  stream->data = nullptr;
  req->cb(req, stream, 0);  // libraft's now: it closes and frees it
}

void RaftPort::Impl::abort(Outgoing* o) {
  o->aborting = true;
  uv_close(reinterpret_cast<uv_handle_t*>(o->tcp), on_outgoing_closed);
}

void RaftPort::Impl::on_outgoing_closed(uv_handle_t* handle) {
  Outgoing* o = static_cast<Outgoing*>(handle->data);
  Impl* self = o->port;
  raft_free(o->tcp);
  self->outgoing.erase(o);
  raft_uv_connect* req = o->req;
  const int status = o->status != 0 ? o->status : RAFT_CANCELED;
  delete o;
  --self->alive;
  req->cb(req, nullptr, status);
  self->maybe_closed();
}

void RaftPort::Impl::on_connection(uv_stream_t* server, int status) {
  Impl* self = static_cast<Impl*>(server->data);
  if (status != 0 || self->closing) return;
  auto* tcp = static_cast<uv_tcp_t*>(raft_malloc(sizeof(uv_tcp_t)));
  if (tcp == nullptr) return;  // the connection waits in the backlog
  uv_tcp_init(self->loop, tcp);
  tcp->data = self;
  ++self->alive;
  sockaddr_storage peer{};
  int length = sizeof peer;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(tcp)) != 0 ||
      uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&peer), &length) != 0 || peer.ss_family != AF_INET) {
    // Gone already (a reset before the accept): nothing to count.
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_refused_stream_closed);
    return;
  }
  const std::uint32_t source = ntohl(reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr.s_addr);
  const auto from = self->pending_from.find(source);
  const std::size_t waiting = from == self->pending_from.end() ? 0 : from->second;
  std::optional<PortRefusal> refusal;
  std::string detail;
  if (self->options.admits_source && !self->options.admits_source(source)) {
    refusal = PortRefusal::kHost;
    detail = "not the host of a server of this node's configuration or file, nor in raft_allowed_networks";
  } else if (waiting >= self->options.max_pending_per_source || self->pending.size() >= self->options.max_pending) {
    refusal = PortRefusal::kPending;
    detail = "closed at once: " + std::to_string(waiting) + " connections from that host (at most " +
             std::to_string(self->options.max_pending_per_source) + ") and " + std::to_string(self->pending.size()) +
             " in all (at most " + std::to_string(self->options.max_pending) + ") wait for their handshake";
  }
  if (refusal) {
    self->refuse(*refusal, source, detail);
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_refused_stream_closed);
    return;
  }
  auto* incoming = new Incoming;
  incoming->port = self;
  incoming->tcp = tcp;
  incoming->source = source;
  tcp->data = incoming;
  incoming->timer.data = incoming;
  uv_timer_init(self->loop, &incoming->timer);
  incoming->open_handles = 2;
  self->pending.insert(incoming);
  ++self->pending_from[source];
  uv_timer_start(&incoming->timer, on_timeout, static_cast<std::uint64_t>(self->options.handshake_timeout.count()), 0);
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(tcp), on_alloc, on_read) != 0) self->abort(incoming);
}

// Exactly what is left of the handshake's part being read: no byte after
// the handshake (the peer's first message, libraft's to read) is taken.
void RaftPort::Impl::on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* buf) {
  Incoming* incoming = static_cast<Incoming*>(handle->data);
  if (!incoming->in_address) {
    buf->base = reinterpret_cast<char*>(incoming->preamble.data()) + incoming->nread;
    buf->len = sizeof incoming->preamble - incoming->nread;
  } else {
    buf->base = incoming->address.data() + incoming->nread;
    buf->len = incoming->address.size() - 1 - incoming->nread;
  }
}

void RaftPort::Impl::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  Incoming* incoming = static_cast<Incoming*>(stream->data);
  Impl* self = incoming->port;
  if (nread == 0) return;
  if (nread < 0) {
    // Closed or reset by the peer: nothing to count.
    self->abort(incoming);
    return;
  }
  incoming->nread += static_cast<std::size_t>(nread);
  if (!incoming->in_address) {
    if (incoming->nread < sizeof incoming->preamble) return;
    const std::uint64_t protocol = le64toh(incoming->preamble[0]);
    const std::uint64_t length = le64toh(incoming->preamble[2]);
    if (protocol != kHandshakeProtocol || length == 0 || length > kMaxAddressLength) {
      self->refuse(PortRefusal::kHandshake, incoming->source,
                   "its handshake is not libraft's (protocol " + std::to_string(protocol) + ", an address of " +
                       std::to_string(length) + " bytes)");
      self->abort(incoming);
      return;
    }
    incoming->in_address = true;
    incoming->nread = 0;
    incoming->address.assign(length + 1, '\0');
    return;
  }
  if (incoming->nread < incoming->address.size() - 1) return;
  self->handshake_read(incoming);
}

void RaftPort::Impl::handshake_read(Incoming* incoming) {
  uv_read_stop(reinterpret_cast<uv_stream_t*>(incoming->tcp));
  const std::uint64_t id = le64toh(incoming->preamble[1]);
  if (options.admits_claim && !options.admits_claim(incoming->source, id)) {
    refuse(PortRefusal::kId, incoming->source,
           "it said it was server " + std::to_string(id) +
               ", which is not a server of this node's configuration or file with its Raft address on that host, "
               "and the host is not in raft_allowed_networks");
    abort(incoming);
    return;
  }
  prune_handed();
  std::size_t claiming = 0, from_source = 0;
  for (const Handed& h : handed) {
    if (h.source != incoming->source) continue;
    ++from_source;
    if (h.id == id) ++claiming;
  }
  if (claiming >= options.max_open_per_claim || from_source >= options.max_open_per_source) {
    refuse(PortRefusal::kStreams, incoming->source,
           "closed after its handshake: " + std::to_string(claiming) + " streams from that host claiming server " +
               std::to_string(id) + " (at most " + std::to_string(options.max_open_per_claim) + ") and " +
               std::to_string(from_source) + " from that host in all (at most " +
               std::to_string(options.max_open_per_source) + ") are open with libraft");
    abort(incoming);
    return;
  }
  forget_pending(incoming);
  uv_tcp_t* tcp = incoming->tcp;
  uv_stream_t* stream = reinterpret_cast<uv_stream_t*>(tcp);
  incoming->tcp = nullptr;  // libraft's now: it closes and frees it
  --incoming->open_handles;
  uv_timer_stop(&incoming->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&incoming->timer), on_incoming_handle_closed);
  set_no_delay(stream);
  set_keepalive(tcp, options);
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(tcp), &fd);
  stream->data = nullptr;
  accept_cb(transport, id, incoming->address.data(), stream);
  // libraft's uvServer is its data now; a stream it could not take it is
  // closing already (uv_recv.c, uvRecvAcceptCb).
  auto* handle = reinterpret_cast<uv_handle_t*>(stream);
  if (!uv_is_closing(handle) && handle->data != nullptr) {
    handed.push_back({handle, handle->data, fd, incoming->source, id, true});
  }
}

void RaftPort::Impl::prune_handed() {
  if (handed.empty()) return;
  std::unordered_map<uv_handle_t*, Handed*> by_handle;
  for (Handed& h : handed) {
    h.seen = false;
    by_handle[h.stream] = &h;
  }
  // A stream libraft closed is gone from the loop's handles once its close
  // callback ran (it frees it there); one closing is not counted either. Its
  // memory may hold a handle of another since: that one has other data or
  // another descriptor.
  auto visit = [](uv_handle_t* handle, void* arg) {
    auto& handles = *static_cast<std::unordered_map<uv_handle_t*, Handed*>*>(arg);
    const auto it = handles.find(handle);
    if (it == handles.end() || handle->type != UV_TCP || uv_is_closing(handle)) return;
    uv_os_fd_t fd = -1;
    if (handle->data == it->second->server && uv_fileno(handle, &fd) == 0 && fd == it->second->fd) {
      it->second->seen = true;
    }
  };
  uv_walk(loop, visit, &by_handle);
  std::erase_if(handed, [](const Handed& h) { return !h.seen; });
}

void RaftPort::Impl::on_timeout(uv_timer_t* timer) {
  Incoming* incoming = static_cast<Incoming*>(timer->data);
  Impl* self = incoming->port;
  self->refuse(PortRefusal::kTimeout, incoming->source,
               "no handshake within " + std::to_string(self->options.handshake_timeout.count()) + " ms");
  self->abort(incoming);
}

void RaftPort::Impl::forget_pending(Incoming* incoming) {
  if (pending.erase(incoming) == 0) return;
  auto it = pending_from.find(incoming->source);
  if (it != pending_from.end() && --it->second == 0) pending_from.erase(it);
}

void RaftPort::Impl::abort(Incoming* incoming) {
  forget_pending(incoming);
  uv_close(reinterpret_cast<uv_handle_t*>(incoming->tcp), on_incoming_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&incoming->timer), on_incoming_handle_closed);
}

void RaftPort::Impl::on_incoming_handle_closed(uv_handle_t* handle) {
  Incoming* incoming = static_cast<Incoming*>(handle->data);
  if (incoming->tcp != nullptr && handle == reinterpret_cast<uv_handle_t*>(incoming->tcp)) {
    raft_free(incoming->tcp);
    incoming->tcp = nullptr;
  }
  if (--incoming->open_handles > 0) return;
  Impl* self = incoming->port;
  delete incoming;
  --self->alive;
  self->maybe_closed();
}

void RaftPort::Impl::on_refused_stream_closed(uv_handle_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  raft_free(handle);
  --self->alive;
  self->maybe_closed();
}

void RaftPort::Impl::refuse(PortRefusal reason, std::uint32_t source, const std::string& detail) {
  ++refused[static_cast<std::size_t>(reason)];
  const std::pair key{source, reason};
  auto it = logs.find(key);
  if (it == logs.end()) {
    if (logs.size() >= kMaxLogged) return;  // counted only
    it = logs.emplace(key, RefusalLog{}).first;
  }
  RefusalLog& log = it->second;
  std::string line = "refused a connection to the Raft port from " + ipv4_text(source) + ": " + detail;
  const LogRateLimit::Admission admission = log.limit.admit(LogRateLimit::Clock::now());
  if (admission.suppressed_before != 0) report(source, log, admission.suppressed_before);
  if (admission.write) {
    spdlog::warn("raft: {}", line);
    return;
  }
  log.last = std::move(line);
  if (closing) return;  // close() says it
  if (!log_timer_open) {
    uv_timer_init(loop, &log_timer);
    log_timer.data = this;
    log_timer_open = true;
    ++alive;
  }
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&log_timer))) flush_logs(false);
}

void RaftPort::Impl::report(std::uint32_t source, RefusalLog& log, std::uint64_t count) {
  if (count == 1) {
    spdlog::warn("raft: {} (logged late: at most one such line per {} s from {})", log.last, kLogWindow.count(),
                 ipv4_text(source));
  } else {
    spdlog::warn("raft: {} (and {} more from {} in the last {} s)", log.last, count - 1, ipv4_text(source),
                 kLogWindow.count());
  }
  log.last.clear();
}

void RaftPort::Impl::flush_logs(bool all) {
  const auto now = LogRateLimit::Clock::now();
  std::optional<LogRateLimit::Clock::time_point> next;
  for (auto& [key, log] : logs) {
    const std::uint64_t count = all ? log.limit.take_all_suppressed() : log.limit.take_suppressed(now);
    if (count != 0) report(key.first, log, count);
    if (const auto due = log.limit.report_due()) next = next ? std::min(*next, *due) : *due;
  }
  if (all || !next || !log_timer_open) return;
  const auto after = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
  uv_timer_start(&log_timer, on_log_timer, static_cast<std::uint64_t>(std::max<std::int64_t>(after.count(), 1)), 0);
}

void RaftPort::Impl::on_log_timer(uv_timer_t* timer) {
  static_cast<Impl*>(timer->data)->flush_logs(false);
}

void RaftPort::Impl::on_log_timer_closed(uv_handle_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  --self->alive;
  self->maybe_closed();
}

void RaftPort::Impl::close(raft_uv_transport_close_cb cb) {
  closing = true;
  close_cb = cb;
  while (!pending.empty()) abort(*pending.begin());
  for (Outgoing* o : outgoing) {
    if (o->aborting) continue;
    o->status = RAFT_CANCELED;
    abort(o);
  }
  flush_logs(true);
  if (log_timer_open) {
    log_timer_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&log_timer), on_log_timer_closed);
  }
  handed.clear();
  if (listener_open) {
    listener_open = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener), on_listener_closed);
  }
  // raft_uv_tcp's close: its listener never listened, nor did it connect
  // (closed at once).
  inner_close(transport, on_inner_closed);
}

void RaftPort::Impl::on_listener_closed(uv_handle_t* handle) {
  Impl* self = static_cast<Impl*>(handle->data);
  --self->alive;
  self->maybe_closed();
}

void RaftPort::Impl::on_inner_closed(raft_uv_transport* transport) {
  Impl* self = port_of(transport);
  self->inner_closed = true;
  self->maybe_closed();
}

void RaftPort::Impl::maybe_closed() {
  if (!closing || !inner_closed || alive != 0 || close_reported) return;
  close_reported = true;
  close_cb(transport);
}

}  // namespace netsem::raft
