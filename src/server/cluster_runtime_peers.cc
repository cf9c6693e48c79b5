// ClusterRuntime (cluster_runtime.h): the peer lines that arrive on the
// client port (accept_peer): a leader's removal notice, a leader's secret
// check (answered with a proof), a follower's peer link (PeerLinkReceiver,
// its entries to the node); and the refusals of those lines, logged at
// most once per window and source, and counted by kind.
#include "server/cluster_runtime.h"

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace netsem::server {

std::string_view ClusterRuntime::refused_name(Refused kind) {
  switch (kind) {
    case Refused::kRemovalNotice:
      return "removal_notice";
    case Refused::kSecretCheck:
      return "secret_check";
    case Refused::kLinkHello:
      return "link_hello";
    case Refused::kLinkSetUp:
      return "link_set_up";
    case Refused::kLinkProof:
      return "link_proof";
    case Refused::kLinkFrame:
      return "link_frame";
  }
  return "unknown";
}

void ClusterRuntime::log_refusal(const std::string& host, Refused kind, std::string message) {
  ++refused_counts_[static_cast<std::size_t>(kind)];
  if (stopped_) {  // no timer would write what is held back
    spdlog::warn("cluster: {}", message);
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  RefusalLog& log = refusal_logs_[{host, kind}];
  const LogRateLimit::Admission admission = log.limit.admit(now);
  if (admission.suppressed_before != 0) report_refusals(host, log, admission.suppressed_before);
  if (admission.write) {
    spdlog::warn("cluster: {}", message);
  } else {
    log.last = std::move(message);
  }
  if (!refusal_timer_armed_) flush_refusals(now, false);
}

void ClusterRuntime::report_refusals(const std::string& from, RefusalLog& log, std::uint64_t count) {
  if (count == 1) {
    spdlog::warn("cluster: {} (logged late: at most one such line per {} s from {})", log.last,
                 kRefusalLogWindow.count(), from);
  } else {
    spdlog::warn("cluster: {} (and {} more from {} in the last {} s)", log.last, count - 1, from,
                 kRefusalLogWindow.count());
  }
  log.last.clear();
}

void ClusterRuntime::flush_refusals(std::chrono::steady_clock::time_point now, bool all) {
  std::optional<std::chrono::steady_clock::time_point> next;
  for (auto& [key, log] : refusal_logs_) {
    const std::uint64_t count = all ? log.limit.take_all_suppressed() : log.limit.take_suppressed(now);
    if (count != 0) report_refusals(key.first, log, count);
    if (const auto due = log.limit.report_due()) next = next ? std::min(*next, *due) : *due;
  }
  refusal_timer_armed_ = false;
  if (all || stopped_ || !next) return;
  refusal_timer_armed_ = true;
  refusal_timer_.expires_at(*next);
  refusal_timer_.async_wait([this](const std::error_code& error) {
    if (error || stopped_) return;
    refusal_timer_armed_ = false;
    flush_refusals(std::chrono::steady_clock::now(), false);
  });
}

namespace {

// As check_peer_hello compares it: an IPv4 peer of a dual-stack socket is
// an IPv4 peer, as configured.
asio::ip::address plain_address(const asio::ip::address& remote) {
  if (remote.is_v6() && remote.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, remote.to_v6());
  }
  return remote;
}

}  // namespace

bool ClusterRuntime::is_peer_host(const std::array<std::uint8_t, 16>& address) const {
  const std::string host = plain_address(asio::ip::address_v6(address)).to_string();
  for (const auto& [id, client_address] : client_addresses_) {
    if (id == id_) continue;
    const auto parts = cluster::split_host_port(client_address);
    if (parts && parts->first == host) return true;
  }
  return false;
}

void ClusterRuntime::accept_peer(UniqueFd fd, const asio::ip::address& remote, std::string_view line,
                                 std::string rest) {
  const asio::ip::address address = plain_address(remote);
  const std::string host = address.to_string();
  if (auto notice = cluster::check_removal_notice(line, host, id_, client_addresses_, secret_)) {
    if (!*notice) {
      log_refusal(host, Refused::kRemovalNotice,
                  fmt::format("refused a removal notice from {}: {}", host, notice->status().to_string()));
      return;  // fd closes
    }
    const cluster::RemovalNotice& told = **notice;
    if (told.removed != id_ || stopped_ || !node_) return;
    if (ignores_removal(told, node_->status())) return;
    // It stops once no leader has spoken to it for an election timeout
    // (tick(), as for a committed configuration without it): a replay of an
    // old notice to a server added back since, whose configuration is not
    // yet the newer one, changes nothing while its leader talks to it.
    // In a turn of its own: this runs inside a session's read.
    spdlog::info(
        "cluster: server {} says this server was removed at index {}; it stops once no leader has spoken to it for "
        "an election timeout ({} ms)",
        told.from, told.index, election_timeout_ms_);
    told_removed_ = told;
    post([this] { tick(); });
    return;
  }
  if (auto challenge = cluster::check_secret_challenge(line, host, id_, client_addresses_)) {
    if (!*challenge) {
      log_refusal(host, Refused::kSecretCheck,
                  fmt::format("refused a secret check from {}: {}", host, challenge->status().to_string()));
      return;  // fd closes without a word: the leader refuses the ADD
    }
    const cluster::SecretChallenge& asked = **challenge;
    // The proof is all this server says: the leader, which holds the
    // secret, tells whether it matches; this server cannot, and need not
    // (it changes nothing here). It binds this server's own client address
    // (its server.N line): a proof relayed to the leader from another
    // address does not hold there (audit27).
    const auto own = client_addresses_.find(id_);
    const std::string own_address = own == client_addresses_.end() ? std::string() : own->second;
    const std::string answer = cluster::peer_secret_proof(
        id_, cluster::secret_check_proof(secret_, asked.from, asked.added, id_, asked.nonce, own_address));
    if (::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      spdlog::warn("cluster: answering server {}'s secret check: {}", asked.from, std::strerror(errno));
    } else if (asked.added != id_) {
      spdlog::warn("cluster: server {} would add this server as server {}, but it is server {}", asked.from,
                   asked.added, id_);
    } else {
      spdlog::info(
          "cluster: server {} asked whether this server holds the cluster secret before adding it; answered with a "
          "proof (if the add fails with 'did not confirm the cluster secret', this server's secret_file is not the "
          "cluster's)",
          asked.from);
    }
    return;  // fd closes
  }
  const Result<cluster::LinkHello> hello = cluster::check_peer_hello(line, host, id_, client_addresses_);
  if (!hello) {
    log_refusal(host, Refused::kLinkHello,
                fmt::format("refused a peer link from {}: {}", host, hello.status().to_string()));
    return;  // fd closes
  }
  const cluster::ServerId peer = hello->from;
  // Links not yet set up are few: a follower opens one at a time. A host
  // that opens more (each is answered, and waits up to
  // kPeerLinkSetUpTimeout for its proof) is refused beyond this.
  constexpr std::size_t kMaxSettingUp = 16;
  if (std::count_if(receivers_.begin(), receivers_.end(), [](const auto& r) { return !r->linked(); }) >=
      static_cast<std::ptrdiff_t>(kMaxSettingUp)) {
    log_refusal(host, Refused::kLinkSetUp,
                fmt::format("refused a peer link from {} (server {}): {} links are being set up already", host, peer,
                            kMaxSettingUp));
    return;  // fd closes
  }
  asio::ip::tcp::socket socket(io_);
  std::error_code error;
  socket.assign(address.is_v4() ? asio::ip::tcp::v4() : asio::ip::tcp::v6(), fd.get(), error);
  if (error) {
    spdlog::warn("cluster: peer link from server {}: {}", peer, error.message());
    return;  // fd still owns the descriptor and closes it
  }
  (void)fd.release();  // the socket owns it now
  // Which receiver this is, for its handlers (set once it is made).
  auto slot = std::make_shared<const cluster::PeerLinkReceiver*>(nullptr);
  auto receiver = cluster::PeerLinkReceiver::start(
      std::move(socket), *hello, id_, secret_, std::move(rest),
      [this](cluster::ServerId from, std::string entry) {
        if (stopped_) return;
        if (auto status = node_->accept_forwarded(entry); !status) {
          spdlog::debug("cluster: an entry forwarded by server {}: {}", from, status.to_string());
        }
        if (callbacks_.end_turn) callbacks_.end_turn();
      },
      [this, slot, host](cluster::ServerId from, const Status& why) {
        const auto self =
            std::find_if(receivers_.begin(), receivers_.end(), [&slot](const auto& r) { return r.get() == *slot; });
        const bool linked = self != receivers_.end() && (*self)->linked();
        if (!linked && why.code() != StatusCode::kCancelled) {
          log_refusal(host, Refused::kLinkProof,
                      fmt::format("refused a peer link from {} (server {}): {}", host, from, why.to_string()));
        } else if (why.code() == StatusCode::kDenied || why.code() == StatusCode::kProtocol) {
          // A frame altered, replayed or lost on the way (or not a frame):
          // the link is closed, the follower sets up another and sends again
          // what it has no outcome for.
          log_refusal(
              host, Refused::kLinkFrame,
              fmt::format("closed the peer link from {} (server {}): {}; it links again", host, from, why.to_string()));
        } else if (why.code() != StatusCode::kCancelled) {
          spdlog::info("cluster: peer link from server {} ended: {}", from,
                       why ? std::string("closed") : why.to_string());
        }
        std::erase_if(receivers_,
                      [&slot](const std::shared_ptr<cluster::PeerLinkReceiver>& r) { return r.get() == *slot; });
      },
      [this, slot, host](cluster::ServerId from) {
        spdlog::info("cluster: peer link from server {} ({})", from, host);
        // A server keeps one link to its leader: an older link from it (one
        // that died without a FIN, across a partition) is ended, not kept
        // for ever; only once this one proved the secret.
        std::vector<std::shared_ptr<cluster::PeerLinkReceiver>> older;
        for (const auto& r : receivers_) {
          if (r->peer() == from && r.get() != *slot && r->linked()) older.push_back(r);
        }
        for (const auto& r : older) r->close();  // its on_close takes it out of receivers_
      });
  *slot = receiver.get();
  receivers_.push_back(std::move(receiver));
}

}  // namespace netsem::server
