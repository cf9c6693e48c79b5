// The client's connection: plain POSIX sockets and one poll() loop on the I/O
// thread (the socket plus an eventfd that callers poke when they queue a
// request or stop the connection). Timers (connect and handshake deadlines,
// pings, request_timeout, reconnect backoff) are poll timeouts computed from
// deadlines, so the thread never sleeps past something it must do. Here: the
// rounds of connection attempts (run), the handshake, the silent attempts
// kept open from one round to the next (park, unpark), serving a session
// (serve, dispatch) and its end; run() hands a resumable session whose
// connection broke to resume(), in connection_resume.cc with the rest of the
// resume (RESUME, MINE, LEADER) and the wait for the next round.
#include "client/connection.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>

#include "client/client_log.h"
#include "client/resolver.h"
#include "protocol/error_code.h"
#include "protocol/fields.h"
#include "protocol/names.h"
#include "protocol/requests.h"
#include "protocol/stats_json.h"

namespace netsem::client {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(left, 0, 24 * 3600 * 1000));
}

std::string printable(std::string_view text, std::size_t max) {
  std::string out(text.substr(0, max));
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) c = '?';
  }
  if (text.size() > max) out += "...";
  return out;
}

namespace {

// The errors by which a socket call fails for want of this process's (or
// host's) own descriptors or memory, or (connect()'s EADDRNOTAVAIL) of a
// local port or source address to connect from: the ephemeral port range
// used up (many connections in TIME_WAIT), or the source address gone. They
// say nothing about the server.
bool local_errno(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM || error == EADDRNOTAVAIL;
}

// The errors by which a connection to the server's host fails, or a kept
// one ends, with no reply from that host: a timeout, and what the kernel
// reports once the host's ARP (neighbour) entry failed, about 3 s of
// unanswered requests on the client's own segment, or a router could not
// reach it (ICMP host or network unreachable). A host that does not answer
// ARP cannot be told from one whose netsemd froze and then whose link went
// down, or that was cut off or powered off after it accepted: it may still
// hold sessions with permits. Within a server's silent streak each is taken
// as a connect timeout (rule 8, sticky_silence); outside one, as any
// failure, an outage (no route at all on a first try: fallback).
bool no_reply(int error) {
  return error == ETIMEDOUT || error == EHOSTUNREACH || error == ENETUNREACH;
}

// The socket's error behind a failed SSL_connect, SSL_read or SSL_write
// whose SSL_get_error is `ssl_error`, 0 for none. errno tells it only under
// SSL_ERROR_SYSCALL, and only if it was cleared before the call: otherwise
// it may be older than the call (a connect() to another server that failed,
// say ENETUNREACH), and rule 8 would take a TLS failure for no reply from the
// host (no_reply). OpenSSL 3's socket BIO clears errno before each read,
// and write_without_signal before each write, but a call that fails before
// any I/O (a connection OpenSSL had already given up) leaves errno as it
// was: each call site clears it first. SO_ERROR cannot stand in: the recv or
// send that failed took the socket's pending error, and SO_ERROR reads 0.
// The other errors (an alert, an end of stream) have no socket error.
int tls_errno(int ssl_error) {
  return ssl_error == SSL_ERROR_SYSCALL ? errno : 0;
}

std::string_view local_shortage(int error) {
  if (error == EMFILE) return "this process is out of file descriptors";
  if (error == ENFILE) return "this host is out of file descriptors";
  if (error == EADDRNOTAVAIL) return "this host has no local address or port left to connect from";
  return "this host is out of memory for sockets";
}

// The label travels as one field that protocol 1.1 reads as a name (an
// invalid one would fail the handshake: BAD_ARG): no spaces (a 1.0 server
// shows the label as sent, so "%20" would read badly), no control bytes, no
// leading `$`, valid UTF-8 (or ASCII when the truncation or the caller broke it).
std::string sanitize_label(std::string label) {
  if (label.size() > 200) label.resize(200);
  for (char& c : label) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) c = '_';
  }
  if (!label.empty() && label.front() == '$') label.front() = '_';
  if (protocol::check_name(label) != protocol::ErrorCode::kNone) {
    for (char& c : label) {
      if (static_cast<unsigned char>(c) >= 0x80) c = '_';
    }
  }
  return label;
}

std::string default_label() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown-host");
  return std::string(host) + "/" + std::to_string(::getpid()) + "/" + program_invocation_short_name;
}

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

bool holds_the_line(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos) return false;
  const std::string_view request = line.substr(space + 1);
  return request.starts_with("CLUSTER ADD ") || request.starts_with("CLUSTER REMOVE ") ||
         request.starts_with("CLUSTER FENCES ");
}

Clock::time_point lease_stop_by(Clock::time_point lease_from, milliseconds timeout) {
  const auto margin = std::min<milliseconds>(timeout / 20, milliseconds(250));
  return lease_from + timeout * 9 / 10 - margin;
}

std::string Endpoint::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string with_default_port(std::string_view address) {
  const bool bracketed = address.starts_with('[') && address.ends_with(']');
  const bool bare = !address.empty() && !address.starts_with('[') && address.find(':') == std::string_view::npos;
  if (!bracketed && !bare) return std::string(address);
  return std::string(address) + ":" + std::to_string(ClientOptions::kDefaultPort);
}

Result<Endpoint> Endpoint::parse(std::string_view address) {
  const std::string full = with_default_port(address);
  const std::string_view text = full;
  Endpoint endpoint;
  std::string_view port;
  if (text.starts_with('[')) {
    const auto close = text.find("]:");
    if (close == std::string_view::npos)
      return Status(StatusCode::kInvalidArgument, "bad server address: " + std::string(text));
    endpoint.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.substr(0, colon).find(':') != std::string_view::npos) {
      return Status(StatusCode::kInvalidArgument, "bad server address (host:port): " + std::string(text));
    }
    endpoint.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  std::int64_t number = 0;
  if (endpoint.host.empty() || !protocol::parse_int(port, 1, 65535, number)) {
    return Status(StatusCode::kInvalidArgument, "bad server address (host:port): " + std::string(text));
  }
  endpoint.port = static_cast<std::uint16_t>(number);
  return endpoint;
}

std::shared_ptr<Connection> Connection::start(const ClientOptions& options, std::vector<Endpoint> servers,
                                              LookupFunction lookup, std::shared_ptr<RenewingTlsClient> tls) {
  assert(!servers.empty());
  std::shared_ptr<Connection> connection(
      new Connection(options, std::move(servers), std::move(lookup), std::move(tls)));
  connection->thread_ = std::thread([raw = connection.get()] { raw->run(); });
  return connection;
}

Connection::Connection(const ClientOptions& options, std::vector<Endpoint> servers, LookupFunction lookup,
                       std::shared_ptr<RenewingTlsClient> tls)
    : options_(options),
      servers_(std::move(servers)),
      lookup_(std::move(lookup)),
      tls_(std::move(tls)),
      label_(sanitize_label(options.label.empty() ? default_label() : options.label)),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  assert(wake_fd_ >= 0);
}

Connection::~Connection() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Connection::stop() {
  std::lock_guard stop_lock(stop_mutex_);
  if (!thread_.joinable()) return;
  // The I/O thread cannot join itself; the Client never drops its last
  // reference there (loss callbacks must not call the Client).
  assert(!on_io_thread());
  stopping_ = true;
  wake_waiters();
  wake();
  thread_.join();
}

void Connection::wait_first_round(milliseconds timeout) {
  std::unique_lock lock(mutex_);
  first_round_cv_.wait_for(lock, timeout, [&] { return first_round_done_; });
}

bool Connection::connected() const {
  std::lock_guard lock(mutex_);
  return connected_;
}

bool Connection::silent() const {
  std::lock_guard lock(mutex_);
  return !connected_ && !silent_.is_ok();
}

Connection::Counters Connection::counters() const {
  std::lock_guard lock(mutex_);
  Counters counters = counters_;
  counters.silent = !connected_ && !silent_.is_ok();
  return counters;
}

std::shared_ptr<Call> Connection::queue(std::string tag, std::string line, std::uint64_t session, bool may_wait,
                                        Unsent* unsent) {
  std::shared_ptr<Call> call;
  {
    std::lock_guard lock(mutex_);
    if (unsent != nullptr) *unsent = Unsent();
    if (!connected_ || (session != 0 && session != session_)) {
      if (unsent == nullptr || session != 0 || connected_) return nullptr;
      if (session_ > 0 && failed_round_after_ < session_ && !stopping()) {
        // After a session's end, until a round of attempts fails (then the
        // client is in fallback, or refused): the round in progress decides.
        unsent->wait = true;
        unsent->after = session_;
      } else if (!first_round_done_ && !stopping()) {
        // The first round is still under way (it outlasted the wait in
        // Client::create): it decides, as for a round after a session's end.
        unsent->wait = true;
      } else if (!silent_.is_ok() && !stopping()) {
        // The last round's servers accepted and said nothing: not an outage,
        // so a later round decides.
        unsent->wait = true;
        unsent->after = session_;
        unsent->silent = silent_;
      } else {
        unsent->refusal = refused_;
      }
      return nullptr;
    }
    call = std::make_shared<Call>(std::move(tag), session_, std::move(line), may_wait);
    outbox_.push_back(call);
  }
  wake();
  return call;
}

Reply Connection::wait(Call& call) {
  std::unique_lock lock(call.mutex);
  call.cv.wait(lock, [&] { return call.done; });
  return call.reply;
}

void Connection::register_permit(const std::shared_ptr<client::PermitState>& permit) {
  Status reason;
  std::optional<Clock::time_point> stop_by;
  {
    std::lock_guard lock(mutex_);
    if (connected_ && permit->session == session_) {
      permits_[permit.get()] = permit;
      return;
    }
    reason = last_loss_;
    stop_by = last_stop_by_;
  }
  // The session that granted it ended before the grant was handed out.
  permit->mark_lost(reason, stop_by);
}

void Connection::unregister_permit(const client::PermitState* permit) {
  std::lock_guard lock(mutex_);
  permits_.erase(permit);
}

void Connection::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

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
  // Sessionless (ClientOptions::sessionless): a PING in HELLO's place, which
  // every server answers at once, a cluster's without its log.
  if (options_.sessionless) {
    protocol::encode_ping(out_, hello_tag);
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
    shake.lease_tag = next_tag();
    shake.stats_tag = next_tag();
    out_.clear();
    shake.auth_tag = encode_hello_and_auth(shake.hello_tag);
    // The session timeout T comes from LEASE (proposed 1.2: every session may
    // ask, whatever its rights), else from STATS (1.0 and 1.1 servers answer
    // LEASE UNKNOWN_VERB; STATS needs an unlimited read right). Both are
    // pipelined, so the handshake costs one round trip against every server;
    // STATS also tells a client without a token that the server requires one
    // (ERR AUTH), before the session begins.
    protocol::encode_lease(out_, shake.lease_tag);
    if (options_.sessionless) {
      shake.stats_done = true;  // STATS needs the log in a cluster
    } else {
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
    if (!hello_done) return options_.sessionless ? "PING" : "HELLO";
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
  // it waits for a commit, which an election may delay).
  const auto done = [&] {
    return hello_done && lease_done && stats_done && (!lease_ms || *lease_ms <= 0 || leader_tag_.empty());
  };
  while (!done()) {
    const int left = millis_until(deadline);
    if (left == 0) {
      // Connected, and the connection still open: the server is there, and
      // slow (busy, electing a leader, syncing its disk). Not an outage; the
      // round says so once.
      attempt_silent_ = true;
      attempt_failure_ =
          silence(unanswered(), options_.connect_timeout, hello_done ? (options_.sessionless ? "PING" : "HELLO") : "");
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
      if (options_.sessionless && answer.tag == hello_tag && answer.type == protocol::AnswerType::kPong) {
        // The PING in HELLO's place: the server answers. No session id, and
        // the version unknown (1.0 assumed).
        hello_done = true;
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

Status Connection::serve(int fd) {
  std::uint64_t session = 0;
  {
    std::lock_guard lock(mutex_);
    session = session_;
  }
  // After a resume the RESUME is the last request sent (pyK24's finding):
  // the first PING goes T/6 after it, at once if it was answered later.
  last_sent_ = resumed_sent_.value_or(Clock::now());
  sent_seq_ = 0;
  read_upto_ = 0;
  fell_silent_ = false;
  kicked_ = false;
  broken_ = false;
  end_ = End::kDropped;
  for (;;) {
    if (stopping()) {
      end_ = End::kFinal;
      if (resume_id_ != 0) {
        // A resumable session would outlive its connection on the server,
        // permits and all, for its timeout: QUIT ends it at once. Best
        // effort: what the socket takes now.
        out_.clear();
        protocol::encode_quit(out_, next_tag());
        (void)flush(fd);
      }
      return Status(StatusCode::kUnavailable, "the client closed the connection");
    }
    auto now = Clock::now();
    if (!lingering_.empty()) close_lingering(now);
    {
      std::lock_guard lock(mutex_);
      for (auto& call : outbox_) {
        out_ += call->line;
        call->sent_at = now;
        call->readable_at = now;
        call->seq = ++sent_seq_;
        unanswered_.push_back(call);
        pending_.emplace(call->tag, std::move(call));
        last_sent_ = now;
      }
      outbox_.clear();
    }
    // request_timeout is for a request the server has not answered
    // (docs/client.md, "When is a request read"): a request done with is one
    // it answered (QUEUED counts), or one it may queue (Call::may_wait) sent
    // before one it answered: the server reads a connection's lines in order,
    // so it read it and it waits legitimately, with no answer until its
    // grant under `OPTION queued off`. Only the pings behind it tell a long
    // wait from a silent server, so while a request is unanswered they go at
    // least every half request_timeout. (Counting the wait itself made a wait
    // longer than request_timeout drop a healthy connection and fall back,
    // beside the server's holder of the name.) Any other request is answered
    // at once and in order, so a later answer without its own is a broken
    // server: the call fails at request_timeout instead of waiting for ever.
    while (unanswered_head_ < unanswered_.size() &&
           (unanswered_[unanswered_head_]->answered ||
            (unanswered_[unanswered_head_]->may_wait && unanswered_[unanswered_head_]->seq <= read_upto_))) {
      ++unanswered_head_;
    }
    const auto interval = unanswered_head_ < unanswered_.size()
                              ? std::max(milliseconds(1), std::min(ping_interval_, options_.request_timeout / 2))
                              : ping_interval_;
    if (now - last_sent_ >= interval) {
      std::string tag = next_tag();
      std::string line;
      protocol::encode_ping(line, tag);
      auto ping = std::make_shared<Call>(tag, session, std::move(line));
      out_ += ping->line;
      ping->sent_at = now;
      ping->readable_at = now;
      ping->seq = ++sent_seq_;
      unanswered_.push_back(ping);
      pending_.emplace(std::move(tag), std::move(ping));
      last_sent_ = now;
    }
    if (unanswered_head_ == unanswered_.size() || unanswered_head_ > 1024) {
      unanswered_.erase(unanswered_.begin(), unanswered_.begin() + static_cast<std::ptrdiff_t>(unanswered_head_));
      unanswered_head_ = 0;
    }
    auto wake_at = last_sent_ + interval;
    // A CLUSTER ADD or REMOVE may take longer than request_timeout (an ADD
    // waits for the new server to catch up); nothing of the session is read
    // meanwhile, so the lease's lapse (below) bounds it, where there is one.
    const bool held_line = unanswered_head_ < unanswered_.size() && unanswered_[unanswered_head_]->holds_line &&
                           !unanswered_[unanswered_head_]->answered && session_timeout_.count() > 0;
    if (unanswered_head_ < unanswered_.size() && !held_line) {
      const auto expiry = unanswered_[unanswered_head_]->readable_at + options_.request_timeout;
      if (now >= expiry) {
        fell_silent_ = true;
        end_ = End::kSilent;
        return Status(StatusCode::kUnavailable,
                      "no answer from the server within " + std::to_string(options_.request_timeout.count()) + " ms");
      }
      wake_at = std::min(wake_at, expiry);
    }
    if (unanswered_head_ < unanswered_.size() && resume_id_ != 0 && resume_allowed_ && session_timeout_.count() > 0 &&
        has_other_candidate()) {
      // A request unanswered for T/6 (a server frozen, or cut off from the
      // majority): the session moves to another server, within the lease. A
      // request that may wait counts only once a later one is answered (the
      // pings behind it tell). Behind a CLUSTER ADD or REMOVE unanswered,
      // nothing is read (holds_line): the PINGs there wait for its answer,
      // and say nothing of silence (newuser25: an ADD that took 5 s moved
      // the session at 2 T/6 and lost its answer); once it is answered, they
      // count from then (Call::readable_at). The ADD's own bound is the
      // lease's lapse, T/2 with no answer.
      const Call* quiet = nullptr;
      for (std::size_t i = unanswered_head_; i < unanswered_.size() && i < unanswered_head_ + 64; ++i) {
        const Call& call = *unanswered_[i];
        if (!call.answered && call.holds_line) break;
        if (!call.answered && !call.may_wait) {
          quiet = &call;
          break;
        }
      }
      if (quiet != nullptr) {
        const auto quiet_at = quiet->readable_at + session_timeout_ / 6;
        if (now >= quiet_at) {
          end_ = End::kQuiet;
          return Status(StatusCode::kUnavailable,
                        fmt::format("no answer from the server for {} ms, a sixth of its session timeout",
                                    std::chrono::duration_cast<milliseconds>(now - quiet->readable_at).count()));
        }
        wake_at = std::min(wake_at, quiet_at);
      }
    }
    if (session_timeout_.count() > 0) {
      // Half the lease gone with no answer: the server may be unreachable
      // while it holds our permits; the other half is for stopping the work.
      auto lapse = lease_from_ + session_timeout_ / 2;
      // Just resumed, and nothing sent since answered: not before the floor.
      const bool renewing = resumed_sent_ && lease_from_ <= *resumed_sent_ && renew_until_ > lapse;
      if (renewing) lapse = renew_until_;
      if (now >= lapse) {
        fell_silent_ = true;
        end_ = End::kSilent;
        const auto silent_ms = std::chrono::duration_cast<milliseconds>(now - lease_from_).count();
        return Status(StatusCode::kUnavailable,
                      renewing
                          ? fmt::format("no answer from the server for {} ms since the session's RESUME was sent "
                                        "(answered late, of a session timeout of {} ms, and nothing sent since "
                                        "was answered): the lease on the session's permits ran out",
                                        silent_ms, session_timeout_.count())
                          : fmt::format("no answer from the server for {} ms, half its session timeout of {} "
                                        "ms{}",
                                        silent_ms, session_timeout_.count(),
                                        // A sessionless connection holds no permits.
                                        options_.sessionless ? "" : ": the lease on the session's permits ran out"));
      }
      wake_at = std::min(wake_at, lapse);
    }

    if (!lingering_.empty()) wake_at = next_lingering(wake_at);

    pollfd fds[2] = {{fd, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0}, {wake_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, std::max(1, millis_until(wake_at)));
    if (ready < 0 && errno != EINTR)
      return Status(StatusCode::kUnavailable, std::string("poll: ") + std::strerror(errno));
    if (ready <= 0) continue;
    if (fds[1].revents != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &drained, sizeof drained);
    }
    if ((fds[0].revents & POLLOUT) != 0 && !flush(fd)) {
      return Status(StatusCode::kUnavailable, std::string("write failed: ") + std::strerror(errno));
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    std::string why;
    const ssize_t got = read_available(fd, why);
    std::string_view line;
    protocol::LineFramer::Status framed;
    while ((framed = framer_.next(line)) == protocol::LineFramer::Status::kLine) {
      if (Status ended = dispatch(line); !ended.is_ok()) return ended;
    }
    if (framed != protocol::LineFramer::Status::kNeedMore) {
      end_ = End::kFinal;
      broken_ = true;
      return Status(StatusCode::kUnavailable, "the server sent an over-long or binary line");
    }
    framer_.compact();
    if (got < 0 || !why.empty()) return Status(StatusCode::kUnavailable, why);
  }
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

ssize_t Connection::read_available(int fd, std::string& why) {
  tls_failed_ = false;
  read_errno_ = 0;
  char chunk[16384];
  ssize_t total = 0;
  for (;;) {
    ssize_t n = 0;
    if (ssl_) {
      ERR_clear_error();
      errno = 0;  // see tls_errno
      const int got = SSL_read(ssl_.get(), chunk, sizeof chunk);
      if (got > 0) {
        n = got;
      } else {
        const int error = SSL_get_error(ssl_.get(), got);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return total;
        if (error == SSL_ERROR_ZERO_RETURN) {
          why = kClosedByServer;
        } else if (error == SSL_ERROR_SYSCALL) {
          read_errno_ = tls_errno(error);
          why = read_errno_ != 0 ? std::string("read failed: ") + std::strerror(read_errno_)
                                 : std::string(kClosedByServer);
          ERR_clear_error();
        } else {
          tls_failed_ = ERR_GET_REASON(ERR_peek_last_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING;
          why = tls_failure(nullptr, "TLS error");
        }
        return total > 0 ? total : -1;
      }
    } else {
      n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return total;
      if (n <= 0) {
        if (n < 0) read_errno_ = errno;
        why = n == 0 ? std::string(kClosedByServer) : std::string("read failed: ") + std::strerror(errno);
        // Lines that arrived before the end are still handed out by the caller.
        return total > 0 ? total : -1;
      }
    }
    framer_.buffer().append(chunk, static_cast<std::size_t>(n));
    total += n;
  }
}

bool Connection::flush(int fd) {
  while (!out_.empty()) {
    if (ssl_) {
      ERR_clear_error();
      errno = 0;  // see tls_errno
      const int n = SSL_write(ssl_.get(), out_.data(), static_cast<int>(std::min<std::size_t>(out_.size(), 1 << 30)));
      if (n > 0) {
        out_.erase(0, static_cast<std::size_t>(n));
        continue;
      }
      const int error = SSL_get_error(ssl_.get(), n);
      ERR_clear_error();
      if (error == SSL_ERROR_WANT_WRITE) return true;
      // The caller reads errno: the socket's error, else a broken pipe.
      const int socket_error = tls_errno(error);
      errno = socket_error != 0 ? socket_error : EPIPE;
      return false;
    }
    const ssize_t n = ::send(fd, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0) return false;
    out_.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

Status Connection::dispatch(std::string_view line) {
  protocol::Answer answer;
  if (!protocol::parse_answer(line, answer)) {
    broken_ = true;
    end_ = End::kFinal;
    return Status(StatusCode::kUnavailable, "not a netsem answer: " + std::string(line.substr(0, 100)));
  }
  if (answer.tag == "*") {
    if (answer.type != protocol::AnswerType::kError) return Status();
    if (answer.error == protocol::ErrorCode::kShutdown) {
      end_ = End::kShutdown;
      return Status(StatusCode::kShutdown, "the server is shutting down");
    }
    if (answer.error == protocol::ErrorCode::kKicked && answer.message == kResumedElsewhere) {
      // Rule 11 (docs/client.md, "Resuming the session"): a RESUME of this
      // session that the client gave up on (an attempt abandoned in a
      // stalled cluster's log, or sent to a frozen server) was read late
      // and took the session onto that connection, which the client has
      // closed or will close. Only this client holds the secret, so the
      // RESUME was its own: the session lives on at the server, permits
      // and queued requests, as after a dropped connection. Resumed as
      // one (run(): a plain close, never QUIT, which would end the session
      // the server moved), within the same lease; not a KICK.
      log_info("session {}: taken by an earlier RESUME of this client read late (\"{}\"): resuming it", resume_id_,
               printable(line));
      end_ = End::kDropped;
      return Status(StatusCode::kUnavailable,
                    "the server moved the session to another connection of this client (an earlier RESUME read "
                    "late)");
    }
    end_ = End::kFinal;
    if (answer.error == protocol::ErrorCode::kKicked) {
      // An administrator's KICK: the server has let go of the permits
      // already, as for a closed connection; the client reconnects, and
      // sends no waiting ACQUIRE again (the operator's decision).
      kicked_ = true;
      return Status(StatusCode::kUnavailable, "the server ended the session by KICK: " + printable(answer.message));
    }
    return Status(StatusCode::kUnavailable, "the server ended the session: " + std::string(answer.rest));
  }
  if (session_answer(answer, line)) return Status();
  const auto found = pending_.find(std::string(answer.tag));
  if (found == pending_.end()) {
    log_debug("answer to no pending request: {}", line);
    return Status();
  }
  Call& call = *found->second;
  call.answered = true;
  // The server read it, so it cannot end the session before T after that.
  lease_from_ = std::max(lease_from_, call.sent_at);
  read_upto_ = std::max(read_upto_, call.seq);
  if (call.holds_line) {
    // The server reads the requests sent behind it only now: their
    // request_timeout and silence count from here (they were sent seconds
    // ago, and moved a healthy session at once).
    const auto now = Clock::now();
    for (std::size_t i = unanswered_head_; i < unanswered_.size(); ++i) {
      Call& later = *unanswered_[i];
      if (later.seq > call.seq && !later.answered) later.readable_at = std::max(later.readable_at, now);
    }
  }
  if (answer.type == protocol::AnswerType::kQueued) {
    if (options_.queue_positions)
      log_info("\"{}\" is queued at position {}",
               printable(std::string_view(call.line).substr(0, call.line.size() - 1)), answer.rest);
    return Status();
  }
  if (answer.type == protocol::AnswerType::kItem) {
    call.items.emplace_back(answer.rest);
    return Status();
  }
  Reply reply;
  reply.type = answer.type;
  reply.error = answer.error;
  reply.rest = std::string(answer.rest);
  reply.message = std::string(answer.message);
  reply.items = std::move(call.items);
  const std::shared_ptr<Call> keep = std::move(found->second);
  pending_.erase(found);
  if (answer.type == protocol::AnswerType::kOk) count_held(*keep);
  complete(*keep, std::move(reply));
  return Status();
}

void Connection::complete(Call& call, Reply reply) {
  std::lock_guard lock(call.mutex);
  call.reply = std::move(reply);
  call.done = true;
  call.cv.notify_all();
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

}  // namespace netsem::client
