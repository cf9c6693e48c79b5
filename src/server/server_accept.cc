// Server (server.h): the accept loop and admission. A connection is refused
// when its address is not allowed (DENIED) or the sessions are at their limit
// (LIMIT; at EMFILE through the spare descriptor). Over the limit, one from a
// cluster member's address is read to its first line as a possible peer
// link, and one from admin_networks as a possible admin probe (a Rejection
// reads and refuses: rejection.h); anything else, plain or TLS, becomes a
// session.
#include "server/server.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/admin_probe.h"
#include "net/socket_options.h"
#include "protocol/ace_codec.h"
#include "server/rejection.h"
#include "server/session.h"

namespace netsem::server {

namespace {

constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
constexpr std::string_view kLimitLine = "* ERR LIMIT too many connections\n";

}  // namespace

// At EMFILE or ENFILE the pending peer cannot be accepted, and a level-
// triggered accept would report it again at once. The spare descriptor is
// given up for a moment to take the peer off the queue and tell it LIMIT
// (an ACE peer whose `acquire:` has already arrived is closed without a
// word). kFailed when even that failed: the caller retries later.
Server::SpareOutcome Server::refuse_with_spare() {
  spare_fd_.reset();
  UniqueFd peer(::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  const bool accepted = peer.valid();
  const bool nobody_waiting = !accepted && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (accepted) {
    ++counters_.limited_total;
    std::array<char, 8> first{};
    const ssize_t n = ::recv(peer.get(), first.data(), first.size(), MSG_PEEK | MSG_DONTWAIT);
    const bool ace = n > 0 && protocol::detect_dialect(std::string_view(first.data(), static_cast<std::size_t>(n))) ==
                                  protocol::Dialect::kAce;
    if (!ace) ::send(peer.get(), kLimitLine.data(), kLimitLine.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(peer.get(), SHUT_WR);
    // Unread input would turn the close into a reset that can overtake the
    // line: discard what has arrived (a refused peer's first request).
    std::array<char, 4096> sink{};
    while (::recv(peer.get(), sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
    }
    peer_logs_.log(peer_logs_.refused, "refused a connection: the process is out of descriptors");
  }
  // The peer's descriptor is the one the spare gave up: closed first, or
  // the spare could not be had back and the next peer would take the slot.
  peer.reset();
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!spare_fd_.valid()) return SpareOutcome::kFailed;
  if (accepted) return SpareOutcome::kRefused;
  return nobody_waiting ? SpareOutcome::kNobodyWaiting : SpareOutcome::kFailed;
}

void Server::accept_next() {
  if (stopping_) return;
  acceptor_.async_accept([this](const std::error_code& error, asio::ip::tcp::socket socket) {
    if (error == asio::error::operation_aborted || stopping_) return;
    if (error == asio::error::no_descriptors || error.value() == ENFILE) {
      switch (refuse_with_spare()) {
        case SpareOutcome::kRefused:
          accept_next();
          return;
        case SpareOutcome::kNobodyWaiting:
          // Out of descriptors, every accept() fails at once, peer or not:
          // wait for the next peer rather than poll.
          acceptor_.async_wait(asio::socket_base::wait_read, [this](const std::error_code& wait_error) {
            if (!wait_error && !stopping_) accept_next();
          });
          return;
        case SpareOutcome::kFailed:
          break;
      }
    }
    if (error) {
      // Out of descriptors (and no spare) or the like: retry a little later
      // instead of spinning; existing sessions carry on.
      peer_logs_.log(peer_logs_.accept_failed, "accept failed: {}", error.message());
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](const std::error_code& timer_error) {
        if (!timer_error) accept_next();
      });
      return;
    }
    // A spare lost when even a refusal failed (another process took the
    // last file of the system's table, say) is taken back once a descriptor
    // is free again, or the next shortage could refuse no one.
    if (!spare_fd_.valid()) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    on_accept(std::move(socket));
    accept_next();
    end_turn();
  });
}

void Server::on_accept(asio::ip::tcp::socket socket) {
  std::error_code error;
  const auto remote = socket.remote_endpoint(error);
  if (error) return;  // already gone
  const std::string peer = describe_peer(remote);
  const auto address = remote.address();
  const bool allowed = address.is_v4() ? config_.allowed_networks.allows_v4(address.to_v4().to_uint())
                                       : config_.allowed_networks.allows(address.to_v6().to_bytes());
  if (!allowed) {
    ++counters_.denied_total;
    peer_logs_.log(peer_logs_.denied, "denied connection from {}: not in allowed_networks", peer);
    reject(std::move(socket), "* ERR DENIED address " + address.to_string() + " is not allowed\n");
    return;
  }
  if (client_sessions() >= connection_limit_) {
    const auto address_bytes = address.is_v6()
                                   ? address.to_v6().to_bytes()
                                   : asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes();
    // An operator must see the server in the incident that filled it: a
    // connection from admin_networks is read to its first line, in the
    // refusals' room (where it would be held while refused anyway), and
    // served as an admin probe when that asks for the status
    // (admin_probe.h).
    const bool admin = config_.admin_networks.allows(address_bytes);
    // A cluster member's peer link is no session and must not be refused for
    // the clients' limit (its server's clients would go unanswered): a
    // connection from a member's address is read to its first line, in one
    // of the slots kept for that, before it is refused. When they are all
    // taken, the oldest gives way: a link sends its PEER line at once, so
    // only connections that say nothing (or not PEER) for longer than the
    // next few take to come are refused, never a link behind them.
    if (cluster_ && peer_probe_slots_ > 0 && cluster_->is_peer_host(address_bytes)) {
      // When the slots are taken, a newcomer is read in the refusals'
      // room rather than push out a connection that may be a link whose
      // PEER line is on its way; only when that room is full too does the
      // oldest in a slot give way.
      const bool room = probing_peers_ >= peer_probe_slots_ && rejecting_ < max_rejecting_;
      if (!room && probing_peers_ >= peer_probe_slots_) oldest_probe_gives_way();
      if (room || probing_peers_ < peer_probe_slots_) {
        configure_session_socket(socket, config_.session_timeout_ms);
        probe_first_line(std::move(socket), address_bytes, peer, /*in_slot=*/!room, /*link=*/true, admin);
        return;
      }
    }
    if (admin && rejecting_ < max_rejecting_) {
      configure_session_socket(socket, config_.session_timeout_ms);
      probe_first_line(std::move(socket), address_bytes, peer, /*in_slot=*/false, /*link=*/false, admin);
      return;
    }
    refused_for_the_limit(peer);
    reject(std::move(socket), std::string(kLimitLine));
    return;
  }
  configure_session_socket(socket, config_.session_timeout_ms);
  // The session's socket leaves Asio's reactor for the ReadySet (see ready_set.h).
  std::error_code release_error;
  UniqueFd fd(socket.release(release_error));
  if (release_error) {
    spdlog::warn("connection from {}: cannot take its socket: {}", peer, release_error.message());
    return;
  }
  begin_session(std::move(fd), address, peer, nullptr, {});
}

void Server::probe_first_line(asio::ip::tcp::socket socket, const std::array<std::uint8_t, 16>& address,
                              const std::string& peer, bool in_slot, bool link, bool admin) {
  Rejection::PeerHandler on_link;
  if (link) {
    on_link = [this, address, peer](UniqueFd fd, std::string line, std::string rest) {
      spdlog::debug("connection from {} over max_connections: a peer link", peer);
      hand_over_peer_link(std::move(fd), address, line, std::move(rest));
      end_turn();
    };
  }
  Rejection::AdminHandler on_admin;
  if (admin) {
    on_admin.has_room = [this] { return !stopping_ && admin_probes_.size() < kAdminProbes; };
    on_admin.begin = [this, address, peer](UniqueFd fd, std::string read) {
      begin_admin_probe(std::move(fd), address, peer, std::move(read));
      end_turn();
    };
  }
  auto probe = std::make_shared<Rejection>(
      std::move(socket), std::string(kLimitLine), in_slot ? probing_peers_ : rejecting_, std::move(on_link),
      std::move(on_admin), rejecting_, max_rejecting_, [this, peer] { refused_for_the_limit(peer); });
  if (in_slot) {
    std::erase_if(probes_, [](const std::weak_ptr<Rejection>& old) {
      const auto alive = old.lock();
      return !alive || !alive->probing();
    });
    probes_.push_back(probe);
  }
  probe->start();
}

void Server::oldest_probe_gives_way() {
  while (!probes_.empty()) {
    const auto oldest = probes_.front().lock();
    probes_.pop_front();
    if (oldest && oldest->probing()) {
      oldest->give_way();
      return;
    }
  }
}

std::shared_ptr<Session> Server::make_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer) {
  ++counters_.connections_total;
  // The connection's key; on a single server the session's id too (on the
  // log the id comes with the OpenSession's apply).
  const SessionId key = next_session_id_++;
  // For the admin right (protocol 1.1): IPv6, or IPv4-mapped.
  const auto address_bytes = address.is_v6()
                                 ? address.to_v6().to_bytes()
                                 : asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes();
  auto session = std::make_shared<Session>(*this, *dispatcher_, peer_logs_, io_, *ready_, std::move(fd), key,
                                           cluster_ ? SessionId{0} : key, peer, address_bytes);
  sessions_.emplace(key, session);
  return session;
}

void Server::begin_session(UniqueFd fd, const asio::ip::address& address, const std::string& peer, SslPtr ssl,
                           std::string tls_subject) {
  auto session = make_session(std::move(fd), address, peer);
  if (ssl) session->use_tls(std::move(ssl), std::move(tls_subject));
  session->start();  // logs "session began"
}

void Server::begin_admin_probe(UniqueFd fd, const std::array<std::uint8_t, 16>& address, const std::string& peer,
                               std::string read) {
  if (stopping_) return;  // closed as it goes
  peer_logs_.log(peer_logs_.refused, "connection from {} over max_connections ({}): served as an admin probe", peer,
                 connection_limit_);
  auto session = make_session(std::move(fd), asio::ip::address_v6(address), peer);
  admin_probes_.push_back(session->key());
  session->make_admin_probe(std::move(read), std::chrono::steady_clock::now() + kAdminProbeTime);
  session->start();
}

void Server::refused_for_the_limit(const std::string& peer) {
  ++counters_.limited_total;
  if (connection_limit_ == config_.max_connections) {
    peer_logs_.log(peer_logs_.refused, "refused connection from {}: max_connections ({}) reached", peer,
                   config_.max_connections);
  } else {
    peer_logs_.log(peer_logs_.refused, "refused connection from {}: {} sessions, all the descriptor limit allows", peer,
                   connection_limit_);
  }
}

void Server::admin_probe_refused(const std::string& peer) {
  refused_for_the_limit(peer);
}

void Server::on_tls_accept(TlsListener::Connection connection) {
  if (stopping_) return;  // closed as it goes
  const std::string peer = describe_peer(connection.remote);
  const auto address = connection.remote.address();
  const bool allowed = address.is_v4() ? config_.allowed_networks.allows_v4(address.to_v4().to_uint())
                                       : config_.allowed_networks.allows(address.to_v6().to_bytes());
  if (!allowed) {
    ++counters_.denied_total;
    peer_logs_.log(peer_logs_.denied, "denied TLS connection from {}: not in allowed_networks", peer);
    tls_->refuse(std::move(connection), "* ERR DENIED address " + address.to_string() + " is not allowed\n");
    return;
  }
  if (client_sessions() >= connection_limit_) {
    ++counters_.limited_total;
    peer_logs_.log(peer_logs_.refused, "refused TLS connection from {}: {} sessions, the most allowed", peer,
                   connection_limit_);
    tls_->refuse(std::move(connection), std::string(kLimitLine));
    return;
  }
  begin_session(std::move(connection.fd), address, peer, std::move(connection.ssl), std::move(connection.subject));
}

void Server::reject(asio::ip::tcp::socket socket, std::string line) {
  if (rejecting_ >= max_rejecting_) return;  // the socket closes as it goes out of scope
  std::make_shared<Rejection>(std::move(socket), std::move(line), rejecting_)->start();
}

}  // namespace netsem::server
