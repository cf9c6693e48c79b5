// The client's connection: plain POSIX sockets and one poll() loop on the I/O
// thread (the socket plus an eventfd that callers poke when they queue a
// request or stop the connection). Timers (connect and handshake deadlines,
// pings, request_timeout, reconnect backoff) are poll timeouts computed from
// deadlines, so the thread never sleeps past something it must do. Here: the
// Connection's face to its callers (start, stop, queue a request, wait for
// its answer, register a remote permit) and the request/answer hot path of a
// session: serve() writes what callers queued, pings, watches
// request_timeout and the lease, reads what came (read_available) and hands
// each answer to its Call (dispatch, complete); flush() writes. The rest of
// the I/O thread is in the neighbouring files that connection.h lists.
#include "client/connection.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client/client_log.h"
#include "client/socket_errors.h"
#include "protocol/error_code.h"
#include "protocol/names.h"
#include "protocol/requests.h"

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

}  // namespace netsem::client
