// One attempt on one server, on the I/O thread: connect_to (the name lookup
// and a non-blocking connect, bounded by connect_timeout), tls_handshake,
// and handshake (HELLO, AUTH, LEASE, STATS, RESUMABLE and LEADER pipelined,
// their answers read into handshake_), with what a failure means: a refusal
// (the server answered no: attempt_refusal_), silence (it accepted and said
// nothing in time: attempt_silent_), this process's own shortage
// (local_failure), or an outage. run() (connection_rounds.cc) makes a
// round's attempts and judges them; resume() (connection_resume.cc) connects
// with connect_to and tls_handshake too.
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "client/client_log.h"
#include "client/connection.h"
#include "client/resolver.h"
#include "client/socket_errors.h"
#include "protocol/error_code.h"
#include "protocol/fields.h"
#include "protocol/requests.h"
#include "protocol/stats_json.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The session timeout from STATS' JSON; 0 when absent or not a number.
std::int64_t session_timeout_from_stats(std::string_view json) {
  std::vector<protocol::StatsField> fields;
  std::int64_t value = 0;
  if (!protocol::parse_stats(json, fields) || !protocol::stats_integer(fields, "session_timeout_ms", value)) return 0;
  return std::max<std::int64_t>(value, 0);
}

// What a handshake answer other than OK means, in plain words: a refusal
// (kDenied, kLimit, kProtocol), or OK for `* ERR SHUTDOWN`, which is an
// outage like a closed port (the server is going away).
Status refusal_of(const Endpoint& endpoint, const protocol::Answer& answer, std::string_view line) {
  using protocol::ErrorCode;
  const std::string server = endpoint.to_string();
  const std::string said = printable(answer.message);
  if (answer.type == protocol::AnswerType::kError) {
    switch (answer.error) {
      case ErrorCode::kShutdown:
        return {};
      case ErrorCode::kDenied:
        return Status(StatusCode::kDenied,
                      fmt::format("server {} refused this host: {} (this host's address is not in its "
                                  "allowed_networks)",
                                  server, said));
      case ErrorCode::kAuth:
        return Status(StatusCode::kDenied,
                      fmt::format("server {} refused the session: it requires authentication, which this client "
                                  "cannot give ({})",
                                  server, said));
      case ErrorCode::kLimit:
        return Status(StatusCode::kLimit,
                      fmt::format("server {} is full: it has reached its max_connections and refused this session "
                                  "({}); try again later",
                                  server, said));
      default:
        break;
    }
  }
  return Status(StatusCode::kProtocol,
                fmt::format("server {} does not accept this client's netsem protocol v1: it answered \"{}\"", server,
                            printable(line)));
}

}  // namespace

int Connection::connect_to(const Endpoint& endpoint, std::optional<Clock::time_point> until) {
  connect_errno_ = 0;
  attempt_was_local_ = false;
  handshake_ = Handshake();
  handshake_.tls_done = !tls_;
  auto deadline = Clock::now() + options_.connect_timeout;
  if (until && *until < deadline) deadline = *until;
  const auto bound = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  const Resolution resolution = resolve(
      endpoint.host, endpoint.port, deadline, wake_fd_, [this] { return stopping(); }, lookup_);
  if (!resolution.addresses) {
    log_debug("{}: {}", endpoint.to_string(), resolution.error);
    if (resolution.local) {
      local_failure(endpoint, resolution.error);
    } else {
      attempt_failure_ = resolution.error;
      // A slow resolver says nothing of the server: within rule 8's bound,
      // as a connect timeout (sticky_silence).
      if (resolution.timed_out) connect_errno_ = ETIMEDOUT;
    }
    return -1;
  }
  // EADDRNOTAVAIL from every address tried: this host's shortage. From one
  // address only, while another answered otherwise (a refused connection,
  // a timeout), it is that family's, not this host's: a name such as
  // "localhost" gives ::1 as well, which a host (a container) without IPv6
  // on its loopback cannot connect from.
  std::string no_address;
  bool other_answer = false;
  for (const addrinfo* address = resolution.addresses.get(); address != nullptr && !stopping();
       address = address->ai_next) {
    const int fd =
        ::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) {
      // Out of descriptors or memory is this process's state, not the
      // server's (an address family this host lacks is skipped).
      if (const int error = errno; local_errno(error)) {
        local_failure(endpoint, fmt::format("{} (socket: {})", local_shortage(error), std::strerror(error)));
      }
      continue;
    }
    int error = ::connect(fd, address->ai_addr, address->ai_addrlen) == 0 ? 0 : errno;
    // Non-blocking connect bounded by our deadline, never the kernel's minutes.
    while (error == EINPROGRESS) {
      pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_fd_, POLLIN, 0}};
      const int left = millis_until(deadline);
      const int ready = left == 0 ? 0 : ::poll(fds, 2, left);
      if (ready < 0 && errno == EINTR) continue;
      if (stopping()) break;
      if (ready <= 0) {
        error = ETIMEDOUT;
      } else if (fds[0].revents != 0) {
        socklen_t size = sizeof error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
      } else {
        std::uint64_t drained = 0;
        [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
      }
    }
    if (error == 0 && !stopping()) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      handshake_.connected_at = Clock::now();
      return fd;
    }
    connect_errno_ = error;
    log_debug("connect to {} failed: {}", endpoint.to_string(), std::strerror(error));
    if (error == EADDRNOTAVAIL) {
      if (no_address.empty()) {
        no_address = fmt::format("{} (connect: {})", local_shortage(error), std::strerror(error));
      }
      if (!other_answer) attempt_failure_ = no_address;
    } else if (local_errno(error)) {
      local_failure(endpoint, fmt::format("{} (connect: {})", local_shortage(error), std::strerror(error)));
    } else {
      other_answer = true;
      attempt_failure_ = error == ETIMEDOUT
                             ? fmt::format("no connection within {} ms", std::max<std::int64_t>(0, bound.count()))
                             : std::strerror(error);
    }
    ::close(fd);
    if (millis_until(deadline) == 0) break;
  }
  if (!no_address.empty() && !other_answer && !stopping()) local_failure(endpoint, no_address);
  return -1;
}

std::string Connection::encode_hello_and_auth(const std::string& hello_tag) {
  // Sessionless (ClientOptions::sessionless): a LEASE in HELLO's place,
  // which every server answers at once, a cluster's without its log: OK T
  // from a 1.2 server, UNKNOWN_VERB from a 1.0 or 1.1 one. It is the one
  // first line that opens an admin probe over max_connections (proposed
  // 1.2, docs/protocol.md "Admin probes") that no 1.0 or 1.1 client sends
  // first, so the handshake is its lead line (`hello_tag`).
  if (options_.sessionless) {
    protocol::encode_lease(out_, hello_tag);
  } else {
    protocol::encode_hello(out_, hello_tag, label_);
  }
  // AUTH before everything else the session asks: the server answers the
  // requests behind it once the token is checked (docs/security.md).
  if (options_.token.empty()) return {};
  std::string auth_tag = next_tag();
  protocol::encode_auth(out_, auth_tag, options_.token);
  return auth_tag;
}

bool Connection::handshake(int fd, const Endpoint& endpoint, protocol::HelloAnswer& hello) {
  Handshake& shake = handshake_;
  if (!shake.begun) {
    shake.begun = true;
    framer_ = protocol::LineFramer();
    shake.hello_tag = next_tag();
    // Sessionless, the LEASE is the lead line (encode_hello_and_auth).
    shake.lease_tag = options_.sessionless ? shake.hello_tag : next_tag();
    shake.stats_tag = next_tag();
    out_.clear();
    shake.auth_tag = encode_hello_and_auth(shake.hello_tag);
    // The session timeout T comes from LEASE (proposed 1.2: every session may
    // ask, whatever its rights), else from STATS (1.0 and 1.1 servers answer
    // LEASE UNKNOWN_VERB; STATS needs an unlimited read right). Both are
    // pipelined, so the handshake costs one round trip against every server;
    // STATS also tells a client without a token that the server requires one
    // (ERR AUTH), before the session begins.
    if (options_.sessionless) {
      shake.stats_done = true;  // STATS needs the log in a cluster
    } else {
      protocol::encode_lease(out_, shake.lease_tag);
      protocol::encode_stats(out_, shake.stats_tag);
    }
    // Pipelined with HELLO, and not waited for: a 1.0 server answers
    // UNKNOWN_VERB, which is no refusal (it only keeps sending QUEUED lines,
    // which are ignored); an answer that comes after STATS' is dropped as one
    // to no pending request.
    if (!options_.queue_positions) {
      shake.option_tag = next_tag();
      protocol::encode_option(out_, shake.option_tag, protocol::SessionOption::kQueued, false);
    }
    // Proposed 1.2 (docs/client.md, "Resuming the session"): the session may
    // outlive this connection, and the cluster's leader. Not waited for (in a
    // cluster RESUMABLE waits for a commit): a 1.0 or 1.1 server answers both
    // UNKNOWN_VERB, and until RESUMABLE's OK the session is not resumable.
    // Not sessionless: its calls need no leader, and a session with nothing
    // to resume.
    if (!options_.sessionless) {
      resumable_tag_ = next_tag();
      protocol::encode_resumable(out_, resumable_tag_);
      leader_tag_ = next_tag();
      protocol::encode_leader(out_, leader_tag_);
    }
    resume_id_ = 0;
    resume_secret_.clear();
    // The server reads HELLO after this: once it answers, it cannot end the
    // session before T after this. A kept attempt (rule 9) keeps this time:
    // earlier is safe.
    lease_from_ = Clock::now();
  }
  const std::string& hello_tag = shake.hello_tag;
  const std::string& lease_tag = shake.lease_tag;
  const std::string& stats_tag = shake.stats_tag;
  const std::string& auth_tag = shake.auth_tag;
  const std::string& option_tag = shake.option_tag;
  bool& hello_done = shake.hello_done;
  bool& lease_done = shake.lease_done;
  bool& stats_done = shake.stats_done;
  std::optional<std::int64_t>& lease_ms = shake.lease_ms;
  std::int64_t& stats_ms = shake.stats_ms;
  const auto deadline = Clock::now() + options_.connect_timeout;
  attempt_refusal_ = Status();
  // The first request waited for and still unanswered, in the order sent
  // (audit22: the words name it, not always HELLO).
  const auto unanswered = [&]() -> std::string_view {
    if (!hello_done) return options_.sessionless ? "LEASE" : "HELLO";
    if (!auth_tag.empty() && !shake.auth_done) return "AUTH";
    if (!lease_done) return "LEASE";
    if (!stats_done) return "STATS";
    return "LEADER";
  };
  // Once in fallback or refused, every retry would say the same: keep it out
  // of the warnings.
  const auto quiet = [&] {
    std::lock_guard lock(mutex_);
    return in_fallback_ || !refused_.is_ok();
  };
  // No answer to go by: the server is as good as unreachable.
  const auto refuse = [&](std::string_view why) {
    client::log(quiet() ? LogLevel::kDebug : LogLevel::kWarning, "server {} refused the session: {}",
                endpoint.to_string(), why);
    attempt_failure_ = fmt::format("refused the session: {}", why);
    return false;
  };
  // The connection ended before the handshake's answers: as a closed port,
  // not a refusal (nothing was answered).
  const auto closed = [&](std::string_view why) {
    attempt_failure_ = fmt::format("closed the connection before answering{}{}", hello_done ? " " : "",
                                   hello_done ? unanswered() : "");
    if (why != kClosedByServer) attempt_failure_ += fmt::format(" ({})", why);
    client::log(quiet() ? LogLevel::kDebug : LogLevel::kWarning, "server {} {}", endpoint.to_string(),
                attempt_failure_);
    return false;
  };
  // The connection died under the handshake with no word from the server:
  // its host replied to nothing more (a kept attempt's keepalive or
  // TCP_USER_TIMEOUT ran out, or its ARP entry failed). The server closed
  // nothing, so the words say the connection ended, and why.
  const auto ended = [&](int error) {
    attempt_failure_ = fmt::format("the connection ended before an answer{}{} ({}: no reply from that host)",
                                   hello_done ? " to " : "", hello_done ? unanswered() : "", std::strerror(error));
    client::log(quiet() ? LogLevel::kDebug : LogLevel::kWarning, "server {}: {}", endpoint.to_string(),
                attempt_failure_);
    return false;
  };
  // The server answered, and the answer is no.
  const auto refused = [&](Status refusal) {
    client::log(quiet() ? LogLevel::kDebug : LogLevel::kWarning, "{}", refusal.message());
    attempt_failure_ = refusal.message();
    attempt_refusal_ = std::move(refusal);
    return false;
  };
  // From a server that told T through LEASE (1.2), LEADER is waited for too:
  // the move to the leader needs the answer. RESUMABLE is not (in a cluster
  // it waits for a commit, which an election may delay). AUTH is: with a
  // session, STATS behind it is answered after it anyway; sessionless, the
  // LEASE is answered before it, and a token refused must be told as such.
  const auto done = [&] {
    return hello_done && lease_done && stats_done && (auth_tag.empty() || shake.auth_done) &&
           (!lease_ms || *lease_ms <= 0 || leader_tag_.empty());
  };
  while (!done()) {
    const int left = millis_until(deadline);
    if (left == 0) {
      // Connected, and the connection still open: the server is there, and
      // slow (busy, electing a leader, syncing its disk). Not an outage; the
      // round says so once.
      attempt_silent_ = true;
      attempt_failure_ =
          silence(unanswered(), options_.connect_timeout, hello_done ? (options_.sessionless ? "LEASE" : "HELLO") : "");
      log_debug("server {} {}", endpoint.to_string(), attempt_failure_);
      return false;
    }
    pollfd fds[2] = {{fd, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, left) < 0 && errno != EINTR) {
      const int error = errno;
      if (local_errno(error)) {
        local_failure(endpoint, fmt::format("{} (poll: {})", local_shortage(error), std::strerror(error)));
      } else {
        attempt_failure_ = std::string("poll: ") + std::strerror(error);
      }
      return false;
    }
    if (stopping()) return false;
    if ((fds[0].revents & POLLOUT) != 0 && !flush(fd)) {
      const int error = errno;
      if (!ssl_ && local_errno(error)) {
        local_failure(endpoint, fmt::format("{} (write: {})", local_shortage(error), std::strerror(error)));
        return false;
      }
      // A TLS server that refused our certificate has said why in an alert
      // before it closed: read it.
      std::string why;
      if (ssl_ && read_available(fd, why) < 0 && tls_failed_) return refused(tls_refusal(endpoint, why));
      kept_timed_out(error);
      if (no_reply(error)) return ended(error);
      return closed("write failed");
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    std::string why;
    if (read_available(fd, why) < 0) {
      kept_timed_out(read_errno_);
      // TLS 1.3 tells of a client certificate refused only now, by an alert.
      if (tls_failed_) return refused(tls_refusal(endpoint, why));
      if (no_reply(read_errno_)) return ended(read_errno_);
      return closed(why);
    }
    std::string_view line;
    protocol::LineFramer::Status framed;
    while ((framed = framer_.next(line)) == protocol::LineFramer::Status::kLine) {
      protocol::Answer answer;
      if (!protocol::parse_answer(line, answer)) {
        return refused(
            Status(StatusCode::kProtocol, fmt::format("server {} does not speak netsem protocol v1: it answered \"{}\"",
                                                      endpoint.to_string(), printable(line))));
      }
      if (!option_tag.empty() && answer.tag == option_tag) {
        if (answer.type == protocol::AnswerType::kOk) continue;
        if (answer.type == protocol::AnswerType::kError &&
            (answer.error == protocol::ErrorCode::kUnknownVerb || answer.error == protocol::ErrorCode::kBadArg)) {
          log_debug("server {} keeps telling queue positions: {}", endpoint.to_string(), printable(line));
          continue;
        }
      }
      if (!auth_tag.empty() && answer.tag == auth_tag) {
        if (answer.type == protocol::AnswerType::kOk) {
          log_debug("server {} authenticated this client: rights {}", endpoint.to_string(), printable(answer.rest));
          shake.auth_done = true;
          continue;
        }
        // A 1.0 server has no AUTH and requires none.
        if (answer.type == protocol::AnswerType::kError && answer.error == protocol::ErrorCode::kUnknownVerb) {
          shake.auth_done = true;
          continue;
        }
        if (answer.type == protocol::AnswerType::kError && answer.error == protocol::ErrorCode::kLimit) {
          // Not a refusal of the token: the server had too many token checks
          // waiting (a flood of unknown tokens) to check it. Like a full
          // server: the calls fail with a retryable kLimit meanwhile (never
          // fallback: the server answered), and the client reconnects with
          // backoff, AUTH again included.
          return refused(Status(StatusCode::kLimit,
                                fmt::format("server {}: too many token checks waiting at the server; try again later",
                                            endpoint.to_string())));
        }
        if (answer.type == protocol::AnswerType::kError &&
            (answer.error == protocol::ErrorCode::kAuth || answer.error == protocol::ErrorCode::kDenied)) {
          return refused(Status(StatusCode::kDenied, fmt::format("server {} refused this client's token: {}",
                                                                 endpoint.to_string(), printable(answer.message))));
        }
      }
      if (answer.tag == lease_tag) {
        lease_done = true;
        // Sessionless, the LEASE in HELLO's place: whatever it is answered
        // (OK T, or a 1.0 or 1.1 server's UNKNOWN_VERB), the server answers.
        // No session id, and the version unknown (1.0 assumed).
        if (options_.sessionless) hello_done = true;
        std::uint64_t value = 0;
        if (answer.type == protocol::AnswerType::kOk && protocol::parse_uint(answer.rest, value) &&
            value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          lease_ms = static_cast<std::int64_t>(value);
        } else {
          // A 1.0 or 1.1 server (UNKNOWN_VERB): STATS tells T, if it may.
          log_debug("server {} has no LEASE: {}", endpoint.to_string(), printable(line));
        }
        continue;
      }
      if (session_answer(answer, line)) continue;
      if (answer.tag == stats_tag && answer.type == protocol::AnswerType::kError &&
          answer.error == protocol::ErrorCode::kDenied) {
        // Rights without an unlimited read (a token's, a certificate
        // subject's): no refusal; T comes from LEASE, or stays unknown
        // against a 1.1 server, as from a server without one (pings every
        // half of request_timeout, no lease after a silence).
        log_debug("server {} keeps its STATS from this session: {}", endpoint.to_string(), printable(line));
        stats_done = true;
        continue;
      }
      if (answer.type != protocol::AnswerType::kOk) {
        Status refusal = refusal_of(endpoint, answer, line);
        if (refusal.is_ok()) return refuse(printable(line));
        return refused(std::move(refusal));
      }
      if (answer.tag == hello_tag) {
        // "netsem <version> <session-id>": 1.0 and 1.1 are protocol v1; a
        // server that answers otherwise speaks something this build does not.
        if (!protocol::parse_hello(answer.rest, shake.hello) || shake.hello.major != 1) {
          return refused(
              Status(StatusCode::kProtocol,
                     fmt::format("server {} does not speak netsem protocol v1: it answered HELLO with \"{}\"",
                                 endpoint.to_string(), printable(line))));
        }
        hello_done = true;
      }
      if (answer.tag == stats_tag) {
        stats_done = true;
        stats_ms = session_timeout_from_stats(answer.rest);
      }
    }
    if (framed != protocol::LineFramer::Status::kNeedMore) {
      return refused(Status(StatusCode::kProtocol,
                            fmt::format("server {} does not speak netsem protocol v1: it sent an over-long or "
                                        "binary line",
                                        endpoint.to_string())));
    }
    framer_.compact();
  }
  hello = shake.hello;
  const std::int64_t session_timeout_ms = lease_ms ? *lease_ms : stats_ms;
  // A sixth of the session timeout keeps the session alive, and leaves about
  // T/3 of the lease (T/2) for a failover: in a cluster a PONG waits for the
  // log. Without one, the pings still tell a dead server from an idle one
  // within request_timeout.
  ping_interval_ = session_timeout_ms > 0 ? milliseconds(std::max<std::int64_t>(1, session_timeout_ms / 6))
                                          : options_.request_timeout / 2;
  session_timeout_ = milliseconds(session_timeout_ms);
  // Resumable only with a session timeout the server told through LEASE: it
  // bounds the resume (the lease), and with none the server ends the
  // session with its connection anyway.
  resume_allowed_ = lease_ms && *lease_ms > 0;
  // A session begun on a kept attempt (rule 9) holds nothing yet, and
  // whatever it is granted answers a request sent from now on, whose own
  // send time the lease then counts from. Counted from HELLO's first send, a
  // stall longer than T/2 would have the session judged silent as it begins
  // (audit22 finding B).
  if (shake.kept) lease_from_ = Clock::now();
  return true;
}

void Connection::quit_and_close(int fd) {
  out_.clear();
  protocol::encode_quit(out_, next_tag());
  (void)flush(fd);
  out_.clear();
  ssl_.reset();
  ::close(fd);
}

bool Connection::tls_handshake(int fd, const Endpoint& endpoint, std::optional<Clock::time_point> until) {
  // Files renewed on disk since the last connect are read now. A kept
  // attempt (rule 9) goes on with its own.
  if (!handshake_.kept || !ssl_) ssl_ = tls_->current()->open(fd, endpoint.host);
  if (!ssl_) {
    // Only allocations fail there: this process is out of memory.
    local_failure(endpoint, "TLS: " + tls_failure(nullptr, "cannot make a connection"));
    return false;
  }
  auto deadline = Clock::now() + options_.connect_timeout;
  if (until && *until < deadline) deadline = *until;
  const auto bound = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  for (;;) {
    ERR_clear_error();
    errno = 0;  // see tls_errno
    const int result = SSL_connect(ssl_.get());
    if (result == 1) {
      handshake_.tls_done = true;
      return true;
    }
    const int error = SSL_get_error(ssl_.get(), result);
    short events = 0;
    if (error == SSL_ERROR_WANT_READ) {
      events = POLLIN;
    } else if (error == SSL_ERROR_WANT_WRITE) {
      events = POLLOUT;
    } else if (error == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      // A certificate that does not verify, or an alert: the server is
      // there, and the answer is no.
      Status refusal = tls_refusal(endpoint, tls_failure(ssl_.get(), "handshake failed"));
      bool quiet = false;  // once refused, every retry would say the same
      {
        std::lock_guard lock(mutex_);
        quiet = in_fallback_ || !refused_.is_ok();
      }
      client::log(quiet ? LogLevel::kDebug : LogLevel::kWarning, "{}", refusal.message());
      attempt_failure_ = refusal.message();
      attempt_refusal_ = std::move(refusal);
      return false;
    } else if (local_errno(tls_errno(error))) {
      const int saved = errno;
      ERR_clear_error();
      local_failure(endpoint, fmt::format("{} (TLS handshake: {})", local_shortage(saved), std::strerror(saved)));
      return false;
    } else {
      // Closed or reset during the handshake: as a closed port. Only a
      // socket's error counts for rule 8 (a kept attempt that timed out).
      const int saved = tls_errno(error);
      ERR_clear_error();
      kept_timed_out(saved);
      attempt_failure_ =
          fmt::format("TLS handshake: {}",
                      error == SSL_ERROR_SYSCALL && saved != 0 ? std::strerror(saved) : std::string(kClosedByServer));
      return false;
    }
    for (;;) {
      const int left = millis_until(deadline);
      if (left == 0) {
        // Connected, the connection open, no end of the handshake: silent,
        // as for HELLO.
        attempt_silent_ = true;
        attempt_failure_ = silence("the TLS handshake", std::max(milliseconds(0), bound));
        log_debug("server {} {}", endpoint.to_string(), attempt_failure_);
        return false;
      }
      pollfd fds[2] = {{fd, events, 0}, {wake_fd_, POLLIN, 0}};
      const int ready = ::poll(fds, 2, left);
      if (ready < 0 && errno != EINTR) {
        attempt_failure_ = std::string("poll: ") + std::strerror(errno);
        return false;
      }
      if (stopping()) return false;
      if (ready > 0 && fds[1].revents != 0) {
        std::uint64_t drained = 0;
        [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
      }
      if (ready > 0 && fds[0].revents != 0) break;
    }
  }
}

void Connection::local_failure(const Endpoint& endpoint, std::string what) {
  log_debug("{}: {}", endpoint.to_string(), what);
  attempt_was_local_ = true;
  if (attempt_local_.is_ok()) {
    attempt_local_ =
        Status(StatusCode::kIoError, fmt::format("cannot connect to server {}: {}", endpoint.to_string(), what));
  }
  attempt_failure_ = std::move(what);
}

Status Connection::tls_refusal(const Endpoint& endpoint, const std::string& why) const {
  const bool not_tls = why.find("wrong version number") != std::string::npos ||
                       why.find("packet length too long") != std::string::npos ||
                       why.find("record layer failure") != std::string::npos;
  return Status(StatusCode::kDenied,
                fmt::format("TLS handshake with server {} failed: {}{}", endpoint.to_string(), why,
                            not_tls ? " (the server does not speak TLS there: is that its tls_port?)" : ""));
}

}  // namespace netsem::client
