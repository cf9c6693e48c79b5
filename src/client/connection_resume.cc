// The resumable session's side of the Connection (proposed 1.2; docs/
// client.md, "Resuming the session"): RESUMABLE's and LEADER's answers and
// which leader the client reaches (session_answer, leader_to_reach), and
// RESUME on a new connection with HELLO, AUTH, LEASE, LEADER and MINE behind
// it (resume, resume_handshake; a silent attempt's connection kept for the
// next attempt to its server, rule 10). run() (connection_rounds.cc) decides
// when to resume; connect_to and tls_handshake (connection_attempt.cc) open
// the new connections; settle() (connection_settle.cc) settles the broken
// connection's calls from MINE, and serve() (connection.cc) goes on with the
// session.
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "client/client_log.h"
#include "client/connection.h"
#include "protocol/fields.h"
#include "protocol/requests.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

bool Connection::session_answer(const protocol::Answer& answer, std::string_view line) {
  if (!resumable_tag_.empty() && answer.tag == resumable_tag_) {
    resumable_tag_.clear();
    // "<session-id> <secret>"
    const std::string_view rest = answer.rest;
    const auto space = rest.find(' ');
    std::uint64_t id = 0;
    if (answer.type == protocol::AnswerType::kOk && space != std::string_view::npos &&
        protocol::parse_session_id(rest.substr(0, space), id) && space + 1 < rest.size()) {
      resume_id_ = id;
      resume_secret_ = std::string(rest.substr(space + 1));
    } else {
      log_debug("the server keeps no session past its connection: {}", printable(line));
    }
    return true;
  }
  if (!leader_tag_.empty() && answer.tag == leader_tag_) {
    leader_tag_.clear();
    if (answer.type == protocol::AnswerType::kOk) {
      if (Result<Endpoint> leader = Endpoint::parse(answer.rest)) {
        leader_ = *leader;
      } else {
        log_debug("the server names a leader this client cannot read: {}", printable(line));
      }
    }
    return true;
  }
  return false;
}

std::optional<Endpoint> Connection::leader_to_reach(std::optional<Endpoint> from) const {
  if (!leader_) return std::nullopt;
  const std::string& host = leader_->host;
  if (host.empty() || host == "0.0.0.0" || host == "::") return std::nullopt;
  // Only as one of the configured servers: LEADER gives the address the
  // server knows itself by, which a client behind a proxy, a NAT or a TLS
  // port does not reach the same way (and a single server names itself).
  // Under TLS it tells the host only: the configured server on that host.
  std::optional<Endpoint> target;
  for (const Endpoint& endpoint : servers_) {
    if (tls_ ? endpoint.host == host : endpoint.to_string() == leader_->to_string()) target = endpoint;
  }
  if (!target || (from && target->to_string() == from->to_string())) return std::nullopt;
  return target;
}

std::optional<Endpoint> Connection::resume_leader() const {
  // Plain TCP: the leader as LEADER names it, even if not configured (a
  // client given one server of a cluster resumes on the others); under TLS
  // only as a configured server (LEADER names the plain port).
  if (tls_) return leader_to_reach(std::nullopt);
  if (!leader_ || leader_->host.empty() || leader_->host == "0.0.0.0" || leader_->host == "::") return std::nullopt;
  return leader_;
}

bool Connection::has_other_candidate() const {
  std::lock_guard lock(mutex_);
  const std::string& current = counters_.server;
  for (const Endpoint& endpoint : servers_) {
    if (endpoint.to_string() != current) return true;
  }
  // Configured servers only: a silent connection through a proxy must not
  // be left for the server's own address behind it.
  const std::optional<Endpoint> leader = leader_to_reach(std::nullopt);
  return leader && leader->to_string() != current;
}

Connection::Resumed Connection::resume(Endpoint& at, int& fd, const Status& why, const Endpoint* skip) {
  const auto started = Clock::now();
  const auto deadline = lease_from_ + session_timeout_ / 2;
  // The last known leader first, then the configured servers in order (the
  // same server too: a single server whose connection broke is still up).
  std::vector<Endpoint> candidates;
  const auto add = [&](const Endpoint& endpoint) {
    if (skip != nullptr && skip->to_string() == endpoint.to_string()) return;
    for (const Endpoint& known : candidates) {
      if (known.to_string() == endpoint.to_string()) return;
    }
    candidates.push_back(endpoint);
  };
  // The leader first when it is one of the configured servers; else last
  // (a client given one server of a cluster resumes on the leader LEADER
  // named, but a single server behind a proxy is reached through it first).
  if (const std::optional<Endpoint> leader = leader_to_reach(std::nullopt)) add(*leader);
  for (const Endpoint& endpoint : servers_) add(endpoint);
  if (const std::optional<Endpoint> leader = resume_leader()) add(*leader);
  if (candidates.empty()) return Resumed::kLapsed;
  // One server only: a refused connection means its process is gone, and
  // the session with it (a restarted server does not know it).
  const bool single = candidates.size() == 1;
  // The calls of the broken connection wait for the resume; bytes not
  // written are re-sent or settled from MINE.
  out_.clear();
  unanswered_.clear();
  unanswered_head_ = 0;
  log_debug("resuming session {} after: {}", resume_id_, why.message());
  milliseconds backoff = options_.reconnect_min;
  std::string failures;
  // Rule 10: a silent attempt's connection, kept open for the next attempt
  // to its candidate (at most one each), as rule 9 keeps a round's. Closed
  // when the resume ends, however it ends (plain close, as today's attempts
  // are closed: see resume_handshake's "No QUIT"). A kept RESUME that
  // another server answers first may still be read by its server later and
  // take the session from the one that resumed it; closing it cannot tell
  // whether it was read, as for the attempts abandoned before rule 10: no
  // new risk (the session moves to a connection nobody reads, and the
  // client resumes again, or loses it at the lease's end).
  std::unordered_map<std::string, Parked> kept;
  struct CloseKept {
    std::unordered_map<std::string, Parked>& kept;
    ~CloseKept() { close_kept(kept); }
  } close_at_end{kept};
  while (!stopping() && Clock::now() < deadline) {
    for (const Endpoint& candidate : candidates) {
      for (;;) {
        if (stopping() || Clock::now() >= deadline) break;
        attempt_failure_.clear();
        attempt_refusal_ = Status();
        attempt_silent_ = false;
        // Each attempt, connect and TLS handshake included, ends by the
        // lease's end too: the loss (with its stop_by) must not wait for a
        // connect_timeout longer than what is left of the lease.
        int socket = take_kept(kept, candidate);
        if (socket < 0) {
          socket = connect_to(candidate, deadline);
          resume_shake_ = ResumeShake();
        }
        // A silent attempt is kept (rule 10); any other is closed.
        const auto keep_or_close = [&] {
          if (attempt_silent_ && attempt_refusal_.is_ok() && !stopping()) {
            keep_alive(socket, candidate);
            kept.emplace(candidate.to_string(), stash(socket));
            log_debug("server {}: the silent RESUME attempt's connection is kept open for the next attempt",
                      candidate.to_string());
          } else {
            ssl_.reset();
            ::close(socket);
          }
        };
        if (socket < 0) {
          failures = fmt::format("{}: {}", candidate.to_string(), attempt_failure_);
          if (single && connect_errno_ == ECONNREFUSED) {
            log_warning(
                "could not resume session {}: {} refused the connection (the server is gone, and the "
                "session with it)",
                resume_id_, candidate.to_string());
            return Resumed::kServerGone;
          }
          break;
        }
        if (!handshake_.tls_done && !tls_handshake(socket, candidate, deadline)) {
          keep_or_close();
          failures = fmt::format("{}: {}", candidate.to_string(), attempt_failure_);
          break;
        }
        const Resumed outcome = resume_handshake(socket, candidate, deadline);
        if (outcome == Resumed::kResumed) {
          // A session on a kept attempt's socket has a fresh one's options.
          if (handshake_.kept) keep_alive_off(socket, candidate);
          at = candidate;
          fd = socket;
          const std::vector<std::string> mine = std::move(resume_shake_.mine);
          const std::vector<std::string> early = std::move(resume_shake_.early);
          // The lease counts from the RESUME's first send, which a kept
          // attempt or a server that read it after a stall answers late:
          // serve() renews it at once, and lets it lapse no earlier than
          // half way to its stop_by (the other half is the work's to stop).
          const auto now = Clock::now();
          resumed_sent_ = resume_shake_.sent;
          renew_until_ = now + (lease_stop_by(lease_from_, session_timeout_) - now) / 2;
          resume_shake_ = ResumeShake();
          settle(mine, early, skip != nullptr);
          // The permits the session holds, as MINE says (settle set held_
          // from it): an ACQUIRE of 2 counts 2, not 1 as a grant.
          std::int64_t held = 0;
          for (const auto& [name, count] : held_) held += count;
          for (const std::string& line : early) (void)dispatch(line);
          {
            std::lock_guard lock(mutex_);
            counters_.server = candidate.to_string();
            ++counters_.resumes;
          }
          log_info("resumed session {} on {} after {} ms, {} permits kept", resume_id_, candidate.to_string(),
                   std::chrono::duration_cast<milliseconds>(Clock::now() - started).count(), held);
          return outcome;
        }
        keep_or_close();
        if (outcome == Resumed::kGone || outcome == Resumed::kKicked) return outcome;
        if (outcome == Resumed::kMoved) {
          // Taken by another RESUME of ours (only this client holds the
          // secret): a kept attempt of this resume, which answers when
          // waited on next, or one given up earlier and read late (rule 11,
          // as on a served session): the session lives on, and the resume
          // goes on, within the lease as ever.
          failures = fmt::format("{}: {}", candidate.to_string(), attempt_failure_);
          break;
        }
        if (outcome == Resumed::kBusy) {
          // Another RESUME of the session is in flight (or the old
          // connection's AUTH): again, shortly.
          if (!sleep(std::min<milliseconds>(milliseconds(50), options_.reconnect_max), &kept)) break;
          continue;
        }
        failures = fmt::format("{}: {}", candidate.to_string(),
                               attempt_failure_.empty() ? "no answer to RESUME" : attempt_failure_);
        break;
      }
    }
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    // A kept attempt that becomes readable ends the sleep (rule 10, as rule 9).
    if (left.count() <= 0 || !sleep(std::min(backoff, left), &kept)) break;
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
  if (!stopping()) {
    log_warning("could not resume session {} within its lease ({} ms): {}", resume_id_,
                std::chrono::duration_cast<milliseconds>(Clock::now() - started).count(),
                failures.empty() ? "no server answered" : failures);
  }
  return Resumed::kLapsed;
}

Connection::Resumed Connection::resume_handshake(int fd, const Endpoint& endpoint, Clock::time_point lease_end) {
  ResumeShake& shake = resume_shake_;
  if (!shake.begun) {
    shake.begun = true;
    framer_ = protocol::LineFramer();
    out_.clear();
    shake.resume_tag = next_tag();
    shake.hello_tag = next_tag();
    shake.lease_tag = next_tag();
    shake.leader_tag = next_tag();
    shake.mine_tag = next_tag();
    protocol::encode_resume(out_, shake.resume_tag, resume_id_, resume_secret_);
    // The resumed session must authenticate again (docs/protocol.md).
    shake.auth_tag = encode_hello_and_auth(shake.hello_tag);
    protocol::encode_lease(out_, shake.lease_tag);
    protocol::encode_leader(out_, shake.leader_tag);
    protocol::encode_mine(out_, shake.mine_tag);
    // A kept attempt (rule 10) keeps this time: earlier is safe.
    shake.sent = Clock::now();
  }
  const std::string& resume_tag = shake.resume_tag;
  const std::string& hello_tag = shake.hello_tag;
  const std::string& auth_tag = shake.auth_tag;
  const std::string& lease_tag = shake.lease_tag;
  const std::string& leader_tag = shake.leader_tag;
  const std::string& mine_tag = shake.mine_tag;
  const auto sent = shake.sent;
  bool& resumed = shake.resumed;
  bool& hello_done = shake.hello_done;
  bool& lease_done = shake.lease_done;
  bool& leader_done = shake.leader_done;
  bool& mine_done = shake.mine_done;
  std::vector<std::string>& mine = shake.mine;
  std::vector<std::string>& early = shake.early;
  const auto deadline = std::min(lease_end, Clock::now() + options_.connect_timeout);
  const std::string server = endpoint.to_string();
  // RESUME was answered OK but the session cannot go on here (HELLO, AUTH or
  // MINE refused). No QUIT: it would end the session at once and hand its
  // permits on, while the loss reported below may carry a stop_by at the
  // lease's end (after `* ERR SHUTDOWN`) and the work under them runs until
  // then. Only closed, the session keeps its timeout at the server, which
  // counts from this RESUME, later than that stop_by (and a loss without
  // one stops the work at once): nobody is granted the permits before the
  // work under them has stopped.
  const auto give_up = [&](std::string_view why) {
    log_warning("could not resume session {} on {}: {}", resume_id_, server, why);
    out_.clear();
    return Resumed::kGone;
  };
  while (!(resumed && hello_done && lease_done && leader_done && mine_done)) {
    const int left = millis_until(deadline);
    if (left == 0) {
      // Connected, and the connection still open: silent (rule 10 keeps it).
      // The first request still unanswered is named (audit22).
      attempt_silent_ = true;
      const std::string_view what = !resumed                                ? "RESUME"
                                    : !hello_done                           ? "HELLO"
                                    : !auth_tag.empty() && !shake.auth_done ? "AUTH"
                                    : !lease_done                           ? "LEASE"
                                    : !leader_done                          ? "LEADER"
                                                                            : "MINE";
      attempt_failure_ = silence(what, options_.connect_timeout, resumed ? "RESUME" : "");
      log_debug("server {} {}", server, attempt_failure_);
      return Resumed::kNoAnswer;
    }
    pollfd fds[2] = {{fd, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, left) < 0 && errno != EINTR) return Resumed::kNoAnswer;
    if (stopping()) {
      if (resumed) {
        // The client closes (rule 7): the session, ours again since
        // RESUME's OK, ends at once rather than at its timeout. Best
        // effort: what the socket takes now, behind the handshake's lines.
        protocol::encode_quit(out_, next_tag());
        (void)flush(fd);
      }
      return Resumed::kNoAnswer;
    }
    if (fds[1].revents != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
    }
    if ((fds[0].revents & POLLOUT) != 0 && !flush(fd)) {
      attempt_failure_ = "write failed";
      return Resumed::kNoAnswer;
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    std::string why;
    const ssize_t got = read_available(fd, why);
    std::string_view line;
    protocol::LineFramer::Status framed;
    while ((framed = framer_.next(line)) == protocol::LineFramer::Status::kLine) {
      protocol::Answer answer;
      if (!protocol::parse_answer(line, answer)) {
        attempt_failure_ = "not a netsem answer: " + printable(line);
        return Resumed::kNoAnswer;
      }
      const bool ok = answer.type == protocol::AnswerType::kOk;
      if (answer.tag == resume_tag) {
        if (ok) {
          // "<session-id> <pending>"
          std::uint64_t id = 0;
          const auto space = answer.rest.find(' ');
          if (!protocol::parse_session_id(answer.rest.substr(0, space), id) || id != resume_id_) {
            return give_up("RESUME answered another session: " + printable(line));
          }
          resumed = true;
          // The server read RESUME: it cannot end the session before T after it.
          lease_from_ = sent;
          continue;
        }
        if (answer.type == protocol::AnswerType::kError && answer.error == protocol::ErrorCode::kBusy) {
          log_debug("RESUME of session {} on {}: busy, again shortly", resume_id_, server);
          return Resumed::kBusy;
        }
        if (answer.type == protocol::AnswerType::kError && answer.error == protocol::ErrorCode::kNotFound) {
          log_warning("could not resume session {} on {}: the session ended ({})", resume_id_, server,
                      printable(answer.message));
          return Resumed::kGone;
        }
        if (answer.tag == "*") continue;
        log_warning("could not resume session {} on {}: {}", resume_id_, server, printable(line));
        return Resumed::kGone;
      }
      if (answer.tag == "*") {
        if (answer.type != protocol::AnswerType::kError) continue;
        if (resumed && answer.error == protocol::ErrorCode::kKicked && answer.message == kResumedElsewhere) {
          // Another connection took the session from this one, just taken
          // back: one of this resume's kept attempts (rule 10) whose RESUME
          // the server read after this one's, or an attempt given up
          // earlier and read late (rule 11).
          attempt_failure_ = "the session was resumed on another connection";
          out_.clear();
          return Resumed::kMoved;
        }
        if (resumed && answer.error == protocol::ErrorCode::kKicked) {
          // An administrator's KICK of the session this connection has
          // just taken back: the session is over, as when a served
          // connection hears it (dispatch), and no other server is asked.
          attempt_failure_ = "the server ended the session by KICK: " + printable(answer.message);
          log_warning("could not resume session {} on {}: {}", resume_id_, server, attempt_failure_);
          out_.clear();
          return Resumed::kKicked;
        }
        // SHUTDOWN: this server goes away; try the next.
        attempt_failure_ = printable(line);
        return Resumed::kNoAnswer;
      }
      if (!resumed) {
        // Behind a failed RESUME: never reached (it returns).
        continue;
      }
      if (answer.tag == hello_tag) {
        protocol::HelloAnswer hello;
        if (!ok || !protocol::parse_hello(answer.rest, hello) || hello.session_id != resume_id_) {
          return give_up("HELLO after RESUME answered " + printable(line));
        }
        hello_done = true;
      } else if (!auth_tag.empty() && answer.tag == auth_tag) {
        if (!ok &&
            !(answer.type == protocol::AnswerType::kError && answer.error == protocol::ErrorCode::kUnknownVerb)) {
          return give_up("the server refused this client's token: " + printable(line));
        }
        shake.auth_done = true;
      } else if (answer.tag == lease_tag) {
        lease_done = true;
        std::uint64_t value = 0;
        if (ok && protocol::parse_uint(answer.rest, value) && value > 0 &&
            value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          session_timeout_ = milliseconds(static_cast<std::int64_t>(value));
          ping_interval_ = milliseconds(std::max<std::uint64_t>(1, value / 6));
        }
      } else if (answer.tag == leader_tag) {
        leader_done = true;
        if (ok) {
          if (Result<Endpoint> leader = Endpoint::parse(answer.rest)) leader_ = *leader;
        }
      } else if (answer.tag == mine_tag) {
        if (answer.type == protocol::AnswerType::kItem) {
          mine.emplace_back(answer.rest);
        } else if (answer.type == protocol::AnswerType::kEnd) {
          mine_done = true;
        } else {
          return give_up("MINE answered " + printable(line));
        }
      } else {
        // An answer to one of the session's calls (a queued ACQUIRE's grant).
        early.emplace_back(line);
      }
    }
    if (framed != protocol::LineFramer::Status::kNeedMore) {
      attempt_failure_ = "an over-long or binary line";
      return Resumed::kNoAnswer;
    }
    framer_.compact();
    if (got < 0) {
      attempt_failure_ = why.empty() ? std::string(kClosedByServer) : why;
      return Resumed::kNoAnswer;
    }
  }
  return Resumed::kResumed;
}

}  // namespace netsem::client
