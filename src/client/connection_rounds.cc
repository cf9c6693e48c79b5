// The Connection's I/O thread (run): rounds of connection attempts over the
// server list, each server in order (an attempt: connection_attempt.cc; a
// silent one kept for the next round: connection_silent.cc), the move to the
// cluster's leader when a fresh session is offered, the session's beginning
// (session_began), serving it (serve, connection.cc), resuming it when its
// connection broke (resume, connection_resume.cc) and its end
// (session_ended: its calls fail, its permits are lost, with the lease's
// stop-by time when it lapsed); then the round's verdict (a refusal,
// silence, or fallback: enter_fallback), the backoff between rounds (sleep),
// and the sockets of lapsed leases, left open until their stop-by time
// (lingering_). The callers' side of the rounds is here too: a call made
// between two sessions, or after a silent round, waits for what the next
// round finds (await_session, woken by wake_waiters).
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

#include "client/client_log.h"
#include "client/connection.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

bool Connection::sleep(milliseconds timeout, const std::unordered_map<std::string, Parked>* kept) {
  const auto deadline = Clock::now() + timeout;
  std::vector<pollfd> fds;
  while (!stopping()) {
    close_lingering(Clock::now());
    const int left = millis_until(deadline);
    if (left == 0) return true;
    // A parked attempt (rule 9) that becomes readable (its answer came, or
    // its end) ends the sleep: the next round takes it up at once.
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    for (const auto& [server, parked] : parked_) fds.push_back(pollfd{parked.fd, POLLIN, 0});
    if (kept != nullptr) {
      for (const auto& [server, parked] : *kept) fds.push_back(pollfd{parked.fd, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), std::max(1, millis_until(next_lingering(deadline)))) > 0) {
      if (fds[0].revents != 0) {
        std::uint64_t drained = 0;
        [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0) return true;
      }
    }
  }
  return false;
}

void Connection::run() {
  thread_id_ = std::this_thread::get_id();
  milliseconds backoff = options_.reconnect_min;
  while (!stopping()) {
    bool served = false;
    Clock::time_point served_since{};
    std::string failures;
    Status refusal;  // the round's first refusal: a server answered no
    // The round's servers that accepted the connection and did not answer.
    std::vector<std::string> silent_ones;
    attempt_local_ = Status();
    for (const Endpoint& endpoint : servers_) {
      if (stopping()) break;
      attempt_failure_.clear();
      attempt_refusal_ = Status();
      attempt_silent_ = false;
      // Rule 9: a silent attempt of an earlier round goes on on its own
      // connection; otherwise a new one.
      int fd = unpark(endpoint);
      if (fd < 0) fd = connect_to(endpoint);
      protocol::HelloAnswer hello;
      bool answered = fd >= 0 && (handshake_.tls_done || tls_handshake(fd, endpoint)) && handshake(fd, endpoint, hello);
      Endpoint at = endpoint;
      if (answered) {
        // A fresh session, nothing held or asked yet: move to the leader, which
        // answers without a follower's extra hop. At most once per connect;
        // if the leader does not answer, back here.
        if (const std::optional<Endpoint> leader = leader_to_reach(endpoint)) {
          quit_and_close(fd);
          attempt_failure_.clear();
          attempt_silent_ = false;
          fd = connect_to(*leader);
          if (fd >= 0 && (!tls_ || tls_handshake(fd, *leader)) && handshake(fd, *leader, hello)) {
            log_info("moved to the leader {} (from {})", leader->to_string(), endpoint.to_string());
            at = *leader;
          } else {
            log_info("the leader {} did not answer ({}): staying with {}", leader->to_string(),
                     attempt_failure_.empty() ? "no answer" : attempt_failure_, endpoint.to_string());
            ssl_.reset();
            if (fd >= 0) ::close(fd);
            attempt_failure_.clear();
            attempt_refusal_ = Status();
            attempt_silent_ = false;
            fd = connect_to(endpoint);
            answered = fd >= 0 && (!tls_ || tls_handshake(fd, endpoint)) && handshake(fd, endpoint, hello);
          }
        }
      }
      if (!answered) {
        if (fd >= 0 && attempt_silent_ && attempt_refusal_.is_ok() && !stopping()) {
          // Rule 9: the server may be frozen or stalled with our HELLO in its
          // queue or its log: a new connection each round would fill its accept
          // queue or its session slots. Kept open, waited on next round.
          park(fd, endpoint);
        } else {
          ssl_.reset();
          if (fd >= 0) ::close(fd);
        }
        sticky_silence(endpoint);
        failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", endpoint.to_string(),
                                attempt_failure_.empty() ? "no answer" : attempt_failure_);
        if (refusal.is_ok()) refusal = attempt_refusal_;
        if (attempt_silent_ && attempt_refusal_.is_ok()) silent_ones.push_back(endpoint.to_string());
        continue;
      }
      // A session on a kept attempt's socket has a fresh one's options.
      if (handshake_.kept) keep_alive_off(fd, at);
      session_began(at, hello);
      served_since = Clock::now();
      int live = fd;
      Status reason;
      std::optional<Clock::time_point> stop_by;
      for (;;) {
        reason = serve(live);
        // The TLS object goes (SSL_free writes nothing: a lingering socket
        // stays silent); the socket is closed or lingers below.
        ssl_.reset();
        // A server that closed or refused the session has let go of its
        // permits already; one that fell silent holds them until the lease's
        // end. One that said SHUTDOWN has let go too, but grants nothing more,
        // and its next start grants nothing before the lease's end either (the
        // lease wait after a restart, docs/durability.md): the work may go on
        // until then, and no longer.
        const bool lease = (fell_silent_ || reason.code() == StatusCode::kShutdown) && session_timeout_.count() > 0;
        stop_by = lease ? std::optional(lease_stop_by(lease_from_, session_timeout_)) : std::nullopt;
        // A resumable session whose connection ended without a word lives on
        // at the server (or the cluster) until its timeout: carry it on over a
        // new connection, within the lease.
        if (stopping() || resume_id_ == 0 || !resume_allowed_ || session_timeout_.count() <= 0 ||
            (end_ != End::kDropped && end_ != End::kShutdown && end_ != End::kQuiet)) {
          break;
        }
        const bool quiet = end_ == End::kQuiet;
        const Endpoint silent = at;
        // A silent server's socket stays open until the resume is decided: if
        // nobody takes the session, it lingers as after a lapse.
        const int old = live;
        if (!quiet) ::close(old);
        live = -1;
        const Resumed outcome = resume(at, live, reason, quiet ? &silent : nullptr);
        if (outcome == Resumed::kResumed) {
          // The server that took the session kicks the old connection: no QUIT.
          if (quiet) ::close(old);
          continue;
        }
        if (quiet) {
          if (outcome == Resumed::kLapsed && !stopping()) {
            fell_silent_ = true;
            live = old;
          } else {
            ::close(old);
          }
        }
        if (stopping()) {
          reason = Status(StatusCode::kUnavailable, "the client closed the connection");
          stop_by.reset();
        } else if (outcome == Resumed::kKicked) {
          // KICKed as it was resumed: the server let go of the permits at
          // once, and the waiting calls end with the session, not sent
          // again (the operator's decision), as after a KICK heard in serve().
          kicked_ = true;
          stop_by.reset();
          reason = Status(StatusCode::kUnavailable, attempt_failure_);
        } else if (outcome == Resumed::kServerGone) {
          // The only server's process is gone, and the session with it; its
          // next start grants nothing before the lease's end (the lease wait,
          // docs/durability.md), so the work may go on until then, and no
          // longer: as after `* ERR SHUTDOWN`.
          stop_by = lease_stop_by(lease_from_, session_timeout_);
        } else if (outcome == Resumed::kLapsed) {
          // Nobody answered within the lease: the session may still hold the
          // permits on a server the client cannot reach, until T after the
          // last request it read.
          stop_by = lease_stop_by(lease_from_, session_timeout_);
          reason = Status(StatusCode::kUnavailable,
                          fmt::format("{}; no server resumed the session within half its session timeout of {} "
                                      "ms: the lease on the session's permits ran out",
                                      reason.message(), session_timeout_.count()));
        }
        break;
      }
      if (live < 0) {
        // Closed for the resume.
      } else if (stop_by && fell_silent_) {
        // The server may only be frozen or cut off for a moment: if it read
        // our close when it comes back, it would hand the permits on at once,
        // while the work under them may run until stop_by. Open (and unread),
        // the socket leaves it nothing to act on before then but its session
        // timeout. Meanwhile the client reconnects on a new socket.
        lingering_.emplace_back(*stop_by, live);
      } else {
        ::close(live);
      }
      session_ended(reason, stop_by);
      served = true;
      break;
    }
    if (stopping()) break;
    // Back to reconnect_min only after a session that lived reconnect_max or
    // more: a server that ends every session at once (drops each request,
    // breaks the protocol) is not reconnected to reconnect_min apart for
    // ever, and a waiting ACQUIRE sent again on each session (rule 9) with it.
    const bool settled = served && Clock::now() - served_since >= options_.reconnect_max;
    if (settled) {
      backoff = options_.reconnect_min;
    } else if (!served) {
      bool was_local = false;   // the last round failed alike: said already
      bool was_silent = false;  // likewise
      {
        std::lock_guard lock(mutex_);
        was_local = refused_.code() == StatusCode::kIoError;
        was_silent = !silent_.is_ok();
        counters_.unreachable = failures;
        // A refusal is an answer: no fallback, whatever the other servers did.
        // Nor when this process could not try a server for want of its own
        // descriptors or memory: the servers may be up and holding, and its
        // calls fail with that until a round gets through.
        refused_ = refusal.is_ok() && !attempt_local_.is_ok()
                       ? Status(StatusCode::kIoError,
                                attempt_local_.message() +
                                    "; not an outage, so no fallback: the client tries the servers again")
                       : refusal;
        // Nor when a server accepted the connection and did not answer in
        // time: it may be electing a leader or syncing its disk while its
        // sessions hold permits. The calls wait for a round that decides.
        silent_servers_.clear();
        if (refused_.is_ok() && !silent_ones.empty()) {
          silent_servers_ = silent_ones.size() == 1 ? "server " : "servers ";
          for (std::size_t i = 0; i < silent_ones.size(); ++i) {
            silent_servers_ += (i == 0 ? "" : ", ") + silent_ones[i];
          }
          silent_ = Status(StatusCode::kUnavailable,
                           fmt::format("{} accepted the connection but did not answer within {} ms (busy, electing "
                                       "a leader or syncing its disk): not an outage, so no fallback",
                                       silent_servers_, options_.connect_timeout.count()));
        } else {
          silent_ = Status();
        }
        failed_round_after_ = session_;
      }
      if (refusal.is_ok() && !attempt_local_.is_ok()) {
        client::log(was_local ? LogLevel::kDebug : LogLevel::kWarning, "{}; no fallback, the client tries again",
                    attempt_local_.message());
      } else if (refusal.is_ok() && !silent_ones.empty()) {
        std::string said;
        {
          std::lock_guard lock(mutex_);
          said = silent_.message();
        }
        client::log(was_silent ? LogLevel::kDebug : LogLevel::kWarning, "{}; the client keeps trying", said);
      } else if (refusal.is_ok()) {
        enter_fallback(failures);
      }
    }
    {
      std::lock_guard lock(mutex_);
      first_round_done_ = true;
    }
    first_round_cv_.notify_all();
    sleep(backoff);
    if (!settled) backoff = std::min(backoff * 2, options_.reconnect_max);
  }
  close_parked();
  leave_lingering();
}

void Connection::session_began(const Endpoint& endpoint, const protocol::HelloAnswer& hello) {
  held_.clear();
  resumed_sent_.reset();
  // The streak ends: the other servers' silent attempts are no longer waited on.
  close_parked();
  {
    std::lock_guard lock(mutex_);
    connected_ = true;
    ++session_;
    counters_.connected = true;
    counters_.server = endpoint.to_string();
    counters_.protocol_major = hello.major;
    counters_.protocol_minor = hello.minor;
    counters_.session_id = hello.session_id;
    counters_.unreachable.clear();
    refused_ = Status();
    silent_ = Status();
    silent_servers_.clear();
    silent_since_.clear();  // loop only, as session_began
    ++counters_.connects;
    if (in_fallback_) {
      in_fallback_ = false;
      ++counters_.fallback_exits;
      log_warning("connected to {}: leaving fallback, names go to the server again", endpoint.to_string());
    } else {
      log_info("connected to {}", endpoint.to_string());
    }
    first_round_done_ = true;
  }
  first_round_cv_.notify_all();
}

void Connection::session_ended(const Status& reason, std::optional<Clock::time_point> stop_by) {
  std::vector<std::shared_ptr<Call>> calls;
  std::unordered_map<const client::PermitState*, std::weak_ptr<client::PermitState>> permits;
  std::string server;
  {
    std::lock_guard lock(mutex_);
    connected_ = false;
    server = std::move(counters_.server);
    counters_.connected = false;
    counters_.server.clear();
    counters_.protocol_major = 0;
    counters_.protocol_minor = 0;
    counters_.session_id = 0;
    ++counters_.losses;
    last_loss_ = reason;
    last_stop_by_ = stop_by;
    calls.swap(outbox_);
    permits.swap(permits_);
  }
  if (stopping()) {
    log_debug("closed the connection to {}", server);
  } else {
    log_warning("lost the connection to {}: {}", server, reason.to_string());
  }
  // No fallback here: the calls wait for the next round of connection
  // attempts (a waiting ACQUIRE is sent again on its session), and only a
  // round that reaches no server enters fallback (run()).
  for (auto& [tag, call] : pending_) calls.push_back(std::move(call));
  pending_.clear();
  held_.clear();
  unanswered_.clear();
  unanswered_head_ = 0;
  out_.clear();
  framer_ = protocol::LineFramer();
  for (const auto& call : calls) {
    Reply reply;
    reply.failure = reason;
    reply.kicked = kicked_;
    reply.broken = broken_;
    complete(*call, std::move(reply));
  }
  for (const auto& [raw, weak] : permits) {
    if (const auto permit = weak.lock()) permit->mark_lost(reason, stop_by);
  }
}

void Connection::enter_fallback(const std::string& failures) {
  std::lock_guard lock(mutex_);
  if (in_fallback_) return;
  in_fallback_ = true;
  ++counters_.fallback_entries;
  log_warning(
      "entering fallback: no server reachable ({}); until a server answers, calls are served by their "
      "names' fallback policy, and the client keeps reconnecting",
      failures);
}

void Connection::close_lingering(Clock::time_point now) {
  std::erase_if(lingering_, [now](const std::pair<Clock::time_point, int>& socket) {
    if (socket.first > now) return false;
    ::close(socket.second);
    return true;
  });
}

Clock::time_point Connection::next_lingering(Clock::time_point wake_at) const {
  for (const auto& [at, fd] : lingering_) wake_at = std::min(wake_at, at);
  return wake_at;
}

void Connection::leave_lingering() {
  close_lingering(Clock::now());
  if (lingering_.empty()) return;
  // A stopped client must not close them early either: the work under the
  // lost permits may outlive the Client. A thread of their own closes them
  // on time (the process's exit closes them anyway).
  std::sort(lingering_.begin(), lingering_.end());
  try {
    std::thread([lingering = std::move(lingering_)] {
      for (const auto& [at, fd] : lingering) {
        std::this_thread::sleep_until(at);
        ::close(fd);
      }
    }).detach();
  } catch (const std::system_error&) {
    // No thread to be had: closing now is all that is left.
    for (const auto& [at, fd] : lingering_) ::close(fd);
  }
  lingering_.clear();
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
