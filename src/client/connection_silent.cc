// Servers that accept the connection and do not answer (docs/client.md, "A
// server that accepts and does not answer"): the words for such an attempt
// (silence), rule 8's sticky silence (sticky_silence: within a server's
// silent streak, a connect that gets no reply still counts as silent), and
// the attempts kept open, rule 9's from one round to the next (park,
// unpark, close_parked) and rule 10's within a resume (stash, take_kept,
// close_kept: connection_resume.cc), with keepalive on their sockets and a
// QUIT when one is given up. run() (connection_rounds.cc) parks and unparks;
// the handshakes go on where a kept attempt left off.
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client/client_log.h"
#include "client/connection.h"
#include "client/socket_errors.h"
#include "protocol/requests.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

std::string Connection::silence(std::string_view what, milliseconds bound, std::string_view answered) const {
  if (!handshake_.kept) {
    if (answered.empty())
      return fmt::format("accepted the connection but did not answer {} within {} ms", what, bound.count());
    return fmt::format("accepted the connection and answered {} but not {} within {} ms", answered, what,
                       bound.count());
  }
  const auto ago = std::chrono::duration_cast<milliseconds>(Clock::now() - handshake_.connected_at).count();
  if (answered.empty())
    return fmt::format("accepted the connection {} ms ago and has not answered {} (the same connection, kept open)",
                       ago, what);
  return fmt::format(
      "accepted the connection {} ms ago and has answered {} but not {} (the same connection, kept open)", ago,
      answered, what);
}

Connection::Parked Connection::stash(int fd) {
  Parked parked;
  parked.fd = fd;
  parked.ssl = std::move(ssl_);
  parked.handshake = std::move(handshake_);
  parked.framer = std::move(framer_);
  parked.out = std::move(out_);
  parked.resume_shake = std::move(resume_shake_);
  handshake_ = Handshake();
  framer_ = protocol::LineFramer();
  out_.clear();
  resume_shake_ = ResumeShake();
  return parked;
}

int Connection::take_kept(std::unordered_map<std::string, Parked>& kept, const Endpoint& endpoint) {
  const auto found = kept.find(endpoint.to_string());
  if (found == kept.end()) return -1;
  Parked& parked = found->second;
  connect_errno_ = 0;
  attempt_was_local_ = false;
  handshake_ = std::move(parked.handshake);
  handshake_.kept = true;
  ssl_ = std::move(parked.ssl);
  framer_ = std::move(parked.framer);
  out_ = std::move(parked.out);
  resume_shake_ = std::move(parked.resume_shake);
  const int fd = parked.fd;
  kept.erase(found);
  return fd;
}

void Connection::close_kept(std::unordered_map<std::string, Parked>& kept) {
  for (auto& [server, parked] : kept) {
    parked.ssl.reset();
    ::close(parked.fd);
    log_debug("server {}: closed the silent attempt's connection kept open", server);
  }
  kept.clear();
}

void Connection::park(int fd, const Endpoint& endpoint) {
  keep_alive(fd, endpoint);
  Parked& parked = parked_[endpoint.to_string()];
  parked = stash(fd);
  parked.resumable_tag = std::move(resumable_tag_);
  parked.leader_tag = std::move(leader_tag_);
  parked.resume_id = resume_id_;
  parked.resume_secret = std::move(resume_secret_);
  parked.lease_from = lease_from_;
  resumable_tag_.clear();
  leader_tag_.clear();
  resume_id_ = 0;
  resume_secret_.clear();
  log_debug("server {}: the silent attempt's connection is kept open for the next round", endpoint.to_string());
}

int Connection::unpark(const Endpoint& endpoint) {
  const std::string server = endpoint.to_string();
  const auto kept = parked_.find(server);
  if (kept == parked_.end()) return -1;
  Parked& parked = kept->second;
  // Rule 8's bound: T after the end of the streak's first silent attempt, a
  // fallback is safe again (the frozen server's holders have stopped). The
  // round connects anew, and a new connection that is silent again starts a
  // new streak (later, so no less safe), parked again: a stall longer than T
  // costs the server one more connection per client, not one per round.
  if (const auto since = silent_since_.find(server); session_timeout_.count() > 0 && since != silent_since_.end() &&
                                                     Clock::now() >= since->second + session_timeout_) {
    log_debug("server {}: closing the connection kept open since {} ms: {} ms after its first silent attempt", server,
              std::chrono::duration_cast<milliseconds>(Clock::now() - parked.handshake.connected_at).count(),
              session_timeout_.count());
    quit_parked(parked);
    parked_.erase(kept);
    silent_since_.erase(since);
    return -1;
  }
  resumable_tag_ = std::move(parked.resumable_tag);
  leader_tag_ = std::move(parked.leader_tag);
  resume_id_ = parked.resume_id;
  resume_secret_ = std::move(parked.resume_secret);
  lease_from_ = parked.lease_from;
  return take_kept(parked_, endpoint);
}

void Connection::close_parked() {
  for (auto& [server, parked] : parked_) {
    quit_parked(parked);
    log_debug("server {}: closed the silent attempt's connection kept open", server);
  }
  parked_.clear();
}

void Connection::keep_alive(int fd, const Endpoint& endpoint) const {
  // Probes a connect_timeout apart (whole seconds, at least one), three
  // unanswered ones end it; TCP_USER_TIMEOUT bounds the same way what is sent
  // and not yet acknowledged, where keepalive does not probe.
  const int every = static_cast<int>(
      std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::seconds>(options_.connect_timeout).count()));
  const int on = 1;
  const int count = 3;
  const unsigned int user_timeout = static_cast<unsigned int>(every) * 1000U * (1U + static_cast<unsigned int>(count));
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &every, sizeof every) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &every, sizeof every) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout) != 0) {
    log_debug("server {}: no keepalive on the kept connection: {}", endpoint.to_string(), std::strerror(errno));
  }
}

void Connection::keep_alive_off(int fd, const Endpoint& endpoint) const {
  // What connect_to sets on a fresh connection is TCP_NODELAY alone: no
  // keepalive, no TCP_USER_TIMEOUT (the session's own pings and the lease
  // watch it). The probe intervals keep_alive set stay, unused without
  // SO_KEEPALIVE (Linux cannot set them back to "the system's").
  const int off = 0;
  const unsigned int none = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof off) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &none, sizeof none) != 0) {
    log_debug("server {}: the kept connection's keepalive stays on: {}", endpoint.to_string(), std::strerror(errno));
  }
}

void Connection::kept_timed_out(int error) {
  if (handshake_.kept && no_reply(error)) connect_errno_ = error;
}

void Connection::quit_parked(Parked& parked) {
  // QUIT behind the handshake (and whatever of it is still unsent), so
  // that the server, once it reads them, ends that session at once instead
  // of keeping it resumable for T (it holds nothing: nothing was asked but
  // the handshake). Best effort, never waited for; with the TLS handshake
  // unfinished no session can begin, and the close is enough. The live
  // session's buffer and TLS object are set aside meanwhile.
  if (parked.handshake.tls_done && parked.handshake.begun) {
    std::swap(out_, parked.out);
    std::swap(ssl_, parked.ssl);
    protocol::encode_quit(out_, next_tag());
    (void)flush(parked.fd);
    std::swap(out_, parked.out);
    std::swap(ssl_, parked.ssl);
  }
  parked.ssl.reset();
  ::close(parked.fd);
}

void Connection::sticky_silence(const Endpoint& endpoint) {
  const std::string server = endpoint.to_string();
  if (attempt_silent_ && attempt_refusal_.is_ok()) {
    // When the streak's first silent attempt ended: the server may have
    // answered others until just before (a freeze during our handshake), not
    // after. The first stays.
    silent_since_.try_emplace(server, Clock::now());
    return;
  }
  // This process's own shortage says nothing of the server.
  if (attempt_was_local_) return;
  const auto since = silent_since_.find(server);
  if (since == silent_since_.end()) return;
  if (no_reply(connect_errno_) && attempt_refusal_.is_ok()) {
    // No reply from the server's host says no more than a timeout (a frozen
    // server's full accept queue drops SYNs; a host that froze, or was cut
    // off, then fails ARP: EHOSTUNREACH, on a kept socket too).
    // The server froze before the streak's first silent attempt ended, so
    // each holder of a permit it granted stops by its lease's end (0.9 T
    // after its last answered request was sent): before T after that end.
    // Until then a SYN dropped by its full accept queue is no sign of an
    // outage. With no T known (no session yet, or a server without session
    // timeouts) no time is safe: its holders may hold as long as its
    // session_timeout_ms, whatever that is.
    if (session_timeout_.count() <= 0) {
      attempt_silent_ = true;
      attempt_failure_ += ", after it accepted and did not answer: still taken as silent: no session timeout known";
      log_debug("server {}: {}", server, attempt_failure_);
      return;
    }
    const auto left = std::chrono::round<milliseconds>(since->second + session_timeout_ - Clock::now());
    if (left.count() > 0) {
      attempt_silent_ = true;
      attempt_failure_ +=
          fmt::format(", after it accepted and did not answer: still taken as silent for {} ms", left.count());
      log_debug("server {}: {}", server, attempt_failure_);
      return;
    }
  }
  silent_since_.erase(since);
}

}  // namespace netsem::client
