// The resumable session's side of the Connection (proposed 1.2; docs/
// client.md, "Resuming the session"): RESUMABLE's and LEADER's answers and
// which leader the client reaches (session_answer, leader_to_reach), RESUME on
// a new connection with HELLO, AUTH, LEASE, LEADER and MINE behind it (resume,
// resume_handshake; a silent attempt's connection kept for the next attempt
// to its server, rule 10), the settling of the broken connection's calls from MINE
// (settle, against the counts of the answers read: count_held), and rule 9's
// wait for the next round of connection attempts after a session that was
// not resumed (await_session). run() (connection_rounds.cc) decides when to
// resume; connect_to and tls_handshake (connection_attempt.cc) open the new
// connections, and serve() (connection.cc) goes on with the session.
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "client/client_log.h"
#include "client/connection.h"
#include "protocol/fields.h"
#include "protocol/names.h"
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

namespace {

// A call's request as parse_request reads it (the line without its "\n").
bool parse_call(const Call& call, protocol::Request& request) {
  protocol::ParseError error;
  std::string_view line = call.line;
  if (line.ends_with('\n')) line.remove_suffix(1);
  return protocol::parse_request(line, request, error) == protocol::ParseStatus::kRequest;
}

}  // namespace

void Connection::settle(const std::vector<std::string>& mine, const std::vector<std::string>& early, bool moved) {
  // What the session holds and waits for at the server.
  struct Held {
    std::int64_t count = 0;
    std::uint64_t fence = 0;
  };
  std::unordered_map<std::string, Held> held;
  std::unordered_map<std::string, bool> queued;  // by tag
  for (const std::string& item : mine) {
    std::vector<std::string_view> fields;
    std::string_view rest = item;
    while (!rest.empty()) {
      const auto space = rest.find(' ');
      fields.push_back(rest.substr(0, space));
      rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    }
    std::string name;
    std::int64_t count = 0;
    std::uint64_t fence = 0;
    if (fields.size() == 4 && fields[0] == "held" &&
        protocol::decode_name(fields[1], name) == protocol::ErrorCode::kNone &&
        protocol::parse_int(fields[2], 1, std::numeric_limits<std::int64_t>::max(), count) &&
        protocol::parse_uint(fields[3], fence)) {
      held[name] = {count, fence};
    } else if (fields.size() == 4 && fields[0] == "queued") {
      queued[std::string(fields[1])] = true;
    } else {
      log_debug("MINE: a row this client does not read: {}", printable(item));
    }
  }
  // The tags the new connection has already answered for good (not QUEUED).
  std::unordered_map<std::string, bool> answered;
  for (const std::string& line : early) {
    protocol::Answer answer;
    if (protocol::parse_answer(line, answer) && answer.type != protocol::AnswerType::kQueued) {
      answered[std::string(answer.tag)] = true;
    }
  }
  // What the session held as far as the client knew: the held counts of the
  // answers read (held_), not the registered permits. A grant is registered
  // only on its caller's thread, after the host-wide mark (which may wait),
  // and a permit being released is unregistered before its RELEASE is even
  // queued: counting permits_ here would take a grant already read for a
  // rise and hand it to another unanswered ACQUIRE of the name (two permits
  // in the client for one in the session).
  std::unordered_map<std::string, std::int64_t> extra;  // MINE's count less the known one, by name
  for (const auto& [name, row] : held) extra[name] += row.count;
  for (const auto& [name, count] : held_) extra[name] -= count;

  std::vector<std::shared_ptr<Call>> calls;
  for (auto& [tag, call] : pending_) calls.push_back(std::move(call));
  pending_.clear();
  std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
  std::vector<std::shared_ptr<Call>> resend;
  std::vector<std::pair<std::shared_ptr<Call>, Reply>> done;
  const auto now = Clock::now();
  // How the connection ended, for the calls of an outcome left unknown.
  const std::string broke = moved ? "the client moved the session to another server (the server did not answer for "
                                    "a sixth of its session timeout) before the answer"
                                  : "the connection broke before the answer";
  const std::string outcome_unknown = "outcome unknown: " + broke;
  const auto unknown = [&](const std::shared_ptr<Call>& call, std::string_view why = {}) {
    Reply reply;
    reply.failure = Status(StatusCode::kUnavailable, std::string(why.empty() ? outcome_unknown : why));
    done.emplace_back(call, std::move(reply));
  };
  // ACQUIREs first, then RELEASEs: a count that rose is a grant before it is
  // a RELEASE that did not happen (either way the counts agree).
  std::vector<std::pair<std::shared_ptr<Call>, protocol::Request>> releases;
  for (const auto& call : calls) {
    protocol::Request request;
    if (!parse_call(*call, request)) {
      unknown(call);
      continue;
    }
    switch (request.verb) {
      case protocol::Verb::kAcquire: {
        if (queued.contains(call->tag)) {
          // Still waiting: its answer comes here, under its tag.
          call->answered = true;
          call->seq = 0;
          pending_.emplace(call->tag, call);
          break;
        }
        std::int64_t& surplus = extra[request.name];
        if (surplus >= request.count) {
          surplus -= request.count;
          Reply reply;
          reply.type = protocol::AnswerType::kOk;
          reply.rest = std::to_string(held[request.name].fence);
          done.emplace_back(call, std::move(reply));
          break;
        }
        // Ended without a grant (or never read): again, with what is left
        // of its timeout.
        if (request.timeout_ms > 0) {
          const auto left =
              milliseconds(request.timeout_ms) - std::chrono::duration_cast<milliseconds>(now - call->sent_at);
          if (left.count() <= 0) {
            Reply reply;
            reply.type = protocol::AnswerType::kTimeout;
            done.emplace_back(call, std::move(reply));
            break;
          }
          call->line.clear();
          protocol::encode_acquire(call->line, call->tag, request.name, request.count, left.count());
        }
        resend.push_back(call);
        break;
      }
      case protocol::Verb::kWait:
        if (queued.contains(call->tag) || answered.contains(call->tag)) {
          // Not granted before the break (a grant ends the wait): still
          // waiting, its answer comes here under its tag, or has come
          // between RESUME and MINE (dispatched after this). Only a WAIT
          // that is neither may have been granted unheard: unknown.
          call->answered = true;
          call->seq = 0;
          pending_.emplace(call->tag, call);
        } else {
          unknown(call, broke + ", and the resumed session no longer waits for it (it may have been granted)");
        }
        break;
      case protocol::Verb::kRelease:
        releases.emplace_back(call, std::move(request));
        break;
      case protocol::Verb::kGet:
      case protocol::Verb::kList:
      case protocol::Verb::kHolders:
      case protocol::Verb::kWaiters:
      case protocol::Verb::kSessions:
      case protocol::Verb::kStats:
      case protocol::Verb::kPing:
      case protocol::Verb::kLease:
      case protocol::Verb::kMine:
      case protocol::Verb::kLeader:
        resend.push_back(call);
        break;
      default:
        // POST, CREATE, DELETE, KICK, CANCEL...: changed something, or not.
        unknown(call);
        break;
    }
  }
  for (auto& [call, request] : releases) {
    // An unanswered RELEASE is still in held_: it took effect if the count
    // went down by its count, else it is sent again.
    std::int64_t& surplus = extra[request.name];
    if (surplus <= -request.count) {
      surplus += request.count;
      Reply reply;
      reply.type = protocol::AnswerType::kOk;
      done.emplace_back(call, std::move(reply));
    } else {
      resend.push_back(call);
    }
  }
  // From here the session holds what MINE says (the calls sent again have
  // not taken effect); their answers count from there.
  held_.clear();
  for (const auto& [name, row] : held) held_[name] = row.count;
  // Permits the server no longer holds (the count went down with no RELEASE
  // to tell why): lost, as many of the name's registered permits as it takes.
  std::vector<std::shared_ptr<client::PermitState>> lost;
  {
    std::lock_guard lock(mutex_);
    for (auto it = permits_.begin(); it != permits_.end();) {
      const auto permit = it->second.lock();
      if (!permit) {
        ++it;
        continue;
      }
      const auto surplus = extra.find(permit->name);
      if (surplus == extra.end() || surplus->second >= 0) {
        ++it;
        continue;
      }
      surplus->second += permit->count;
      it = permits_.erase(it);
      lost.push_back(permit);
    }
    for (const auto& call : resend) {
      call->answered = false;
      call->items.clear();
    }
    outbox_.insert(outbox_.begin(), resend.begin(), resend.end());
  }
  for (auto& [call, reply] : done) complete(*call, std::move(reply));
  const Status reason(StatusCode::kUnavailable, "the resumed session no longer holds the permit");
  for (const auto& permit : lost) {
    log_warning("session {}: the server no longer holds {} of \"{}\": lost", resume_id_, permit->count,
                printable(permit->name));
    permit->mark_lost(reason, std::nullopt);
  }
}

void Connection::count_held(const Call& call) {
  // Every call's OK passes here: parse only an ACQUIRE's or a RELEASE's.
  if (call.line.find(" ACQUIRE ") == std::string::npos && call.line.find(" RELEASE ") == std::string::npos) return;
  protocol::Request request;
  if (!parse_call(call, request)) return;
  if (request.verb == protocol::Verb::kAcquire) {
    held_[request.name] += request.count;
  } else if (request.verb == protocol::Verb::kRelease) {
    const auto found = held_.find(request.name);
    if (found == held_.end()) return;
    found->second -= request.count;
    if (found->second <= 0) held_.erase(found);
  }
}

Connection::NextSession Connection::await_session(std::uint64_t after, std::optional<Clock::time_point> until,
                                                  std::optional<Clock::time_point> silent_until,
                                                  const std::function<bool()>& cancelled, std::uint64_t& session,
                                                  Status& why) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (stopping()) return NextSession::kStopped;
    if (connected_ && session_ > after) {
      session = session_;
      return NextSession::kServed;
    }
    // A round that failed while session_ was `after` or later began after
    // that session ended (rounds and sessions follow one another on the I/O
    // thread), so it tried every server since. It decides only while it is
    // the last round (no session began after it, which would have cleared
    // refused_): its refusal is read here, with that decision, never later.
    // A session that began and ended since was not this caller's: the round
    // after it decides. A silent round decides nothing: its servers may hold
    // permits and answer soon.
    const bool silent = !connected_ && !silent_.is_ok();
    if (!connected_ && first_round_done_ && failed_round_after_ >= after && failed_round_after_ == session_ &&
        !silent) {
      why = refused_;
      return NextSession::kNoServer;
    }
    if (cancelled && cancelled()) return NextSession::kCancelled;
    if (silent && silent_until && Clock::now() >= *silent_until) {
      why = Status(StatusCode::kUnavailable,
                   fmt::format("{} accepted the connection but {} not answered within {} ms: not an outage, so "
                               "no fallback",
                               silent_servers_, silent_servers_.starts_with("servers ") ? "have" : "has",
                               options_.request_timeout.count()));
      return NextSession::kSilent;
    }
    std::optional<Clock::time_point> wake = until;
    if (silent && silent_until && (!wake || *silent_until < *wake)) wake = silent_until;
    if (wake) {
      if (first_round_cv_.wait_until(lock, *wake) == std::cv_status::timeout && until && Clock::now() >= *until) {
        if (connected_ && session_ > after) continue;
        why = connected_ || silent_.is_ok()
                  ? Status()
                  : Status(StatusCode::kUnavailable,
                           fmt::format("{} accepted the connection but did not answer within {} ms: not an outage, "
                                       "so no fallback",
                                       silent_servers_, options_.connect_timeout.count()));
        return NextSession::kTimedOut;
      }
    } else {
      first_round_cv_.wait(lock);
    }
  }
}

void Connection::wake_waiters() {
  std::lock_guard lock(mutex_);
  first_round_cv_.notify_all();
}

}  // namespace netsem::client
