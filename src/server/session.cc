// Session I/O and lifetime: a non-blocking socket in the server's ReadySet,
// reads into the host's shared buffer, framing (v1 lines, ACE tokens) handed to the
// dispatcher, batched writes, the one timer (idle timeout, ACE heartbeat or
// drain deadline), and the orderly end of a session (permits back at once,
// last answers written, sending side shut, input discarded a moment so the
// peer reads our last line rather than a reset).
#include "server/session.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "cluster/peer_link.h"
#include "core/admin_probe.h"

namespace netsem::server {

namespace {

// How long an ending session discards input after shutting its sending side.
constexpr auto kDrainTime = std::chrono::milliseconds(500);
// How long an ending session may take to write its last answers to a peer
// that reads slowly or not at all: past it, the connection is closed anyway.
constexpr auto kLastWordsTime = std::chrono::seconds(3);
// A buffer that grew for a burst is given back once it is this large: an
// idle session keeps at most this much (see docs/configuration.md, Memory).
constexpr std::size_t kKeepOutputCapacity = 4 << 10;
// How much of a LIST one flush produces before it lets other events run.
constexpr std::size_t kStreamBytesPerTurn = 256 << 10;
// SO_SNDBUF of every session (Linux doubles it for its bookkeeping).
constexpr int kSocketSendBuffer = 64 << 10;
// The most plaintext one TLS record carries (RFC 8446, 5.1).
constexpr std::size_t kTlsRecordBytes = 16 << 10;

}  // namespace

Session::Session(SessionHost& host, Dispatcher& dispatcher, PeerLogs& logs, asio::io_context& io, ReadySet& ready,
                 UniqueFd fd, SessionId key, SessionId id, std::string peer,
                 const std::array<std::uint8_t, 16>& address)
    : host_(host),
      dispatcher_(dispatcher),
      logs_(logs),
      io_(io),
      ready_(ready),
      fd_(std::move(fd)),
      key_(key),
      peer_candidate_(host.takes_peer_links_from(address)),
      state_(id, std::move(peer), static_cast<SessionEvents&>(*this)) {
  state_.address = address;  // for the admin right (protocol 1.1)
}

Session::~Session() = default;

void Session::use_tls(SslPtr ssl, std::string subject) {
  ssl_ = std::move(ssl);
  peer_candidate_ = false;  // peer links are plain TCP
  state_.tls = true;
  state_.tls_subject = std::move(subject);
  state_.dialect = protocol::Dialect::kV1;  // never ACE over TLS
}

void Session::make_admin_probe(std::string read, Clock::time_point deadline) {
  admin_probe_ = true;
  peer_candidate_ = false;  // its first line is no PEER line
  probe_deadline_ = deadline;
  probe_read_ = std::move(read);
}

void Session::start() {
  const int fd = fd_.get();
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  // The kernel's share of a non-reader's backlog, bounded too: without it,
  // send buffers autotune up to net.ipv4.tcp_wmem's maximum (4 MiB) each.
  const int send_buffer = kSocketSendBuffer;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  dispatcher_.begin_session(state_);
  arm_idle_timer();
  update_interest();
  if (admin_probe_) {
    consume(std::exchange(probe_read_, std::string()));
  }
  // Records the handshake read along with its last message: the set would
  // not report them (they left the socket).
  if (ssl_ && SSL_has_pending(ssl_.get()) == 1) {
    asio::post(io_, [self = shared_from_this()] {
      if (self->stage_ == Stage::kClosed) return;
      self->on_ready(EPOLLIN);
      self->host_.end_turn();
    });
  }
}

void Session::update_interest() {
  if (stage_ == Stage::kClosed || broken_) return;
  std::uint32_t wanted = 0;
  // Behind a streaming LIST, an AUTH being checked or (cluster mode) a
  // command waiting for the log, nothing more is read: the peer's requests
  // wait in its socket, not in the server (resume_input() reads on). Read
  // interest is dropped only once bytes come while input is held
  // (on_ready()), not when the hold begins: a client that waits for each
  // answer, as most do, then costs no epoll_ctl per request.
  if (!input_done_ && !(reads_paused_ && state_.input_held())) wanted |= ReadySet::kRead;
  if (write_waiting_ || tls_read_wants_write_) wanted |= ReadySet::kWrite;
  if (registered_ && wanted == interest_) return;
  const bool ok = registered_ ? ready_.modify(fd_.get(), key_, wanted) : ready_.add(fd_.get(), key_, wanted);
  if (!ok) {
    spdlog::warn("session {} ({}): cannot watch its socket: {}", state_.id, state_.peer, std::strerror(errno));
    close_now(stats::EndCause::kError);
    return;
  }
  registered_ = true;
  interest_ = wanted;
}

bool Session::on_ready(std::uint32_t events) {
  if (stage_ == Stage::kClosed) return false;
  const bool broken = (events & (EPOLLERR | EPOLLHUP)) != 0;
  if (write_waiting_ && ((events & EPOLLOUT) != 0 || broken)) {
    write_waiting_ = false;
    flush();  // waits again, or finds the error and closes
    if (stage_ == Stage::kClosed) return false;
  }
  bool more = false;
  if (tls_read_wants_write_ && ((events & EPOLLOUT) != 0 || broken)) {
    tls_read_wants_write_ = false;
    events |= EPOLLIN;  // the read it wanted to write for
  }
  if ((events & (EPOLLIN | EPOLLRDHUP)) != 0 || broken) {
    const bool held = stage_ == Stage::kOpen && state_.input_held();
    if ((interest_ & ReadySet::kRead) != 0 && !held) {
      more = on_readable(events);
    } else if (broken) {
      // Not reading (a LIST streams, or input ended), yet the connection is
      // broken: level-triggered, that would be reported round after round.
      // Stop watching it: input ends after the LIST, and its writes find
      // the break.
      broken_ = true;
      input_done_ = true;
      if (stage_ == Stage::kOpen && state_.input_held()) input_ended_ = true;
      ready_.remove(fd_.get());
      registered_ = false;
      if (write_waiting_ || stage_ == Stage::kDraining) close_now(stats::EndCause::kClose);
      return false;
    } else if (held) {
      reads_paused_ = true;  // update_interest() stops watching for reads
    }
  }
  update_interest();
  return more && stage_ != Stage::kClosed;
}

bool Session::on_readable(std::uint32_t events) {
  if (ssl_) return on_readable_tls(events);
  std::string& buffer = host_.read_buffer();
  const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
  if (n < 0 && errno == EINTR) return true;                              // reported again
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;  // nothing there
  if (n <= 0) {
    on_input_end(n == 0 ? std::string("end of input") : std::string(std::strerror(errno)));
    return false;
  }
  if (stage_ == Stage::kOpen) consume(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  // Level-triggered, the socket stays ready, but the set's descriptor is
  // woken only by new arrivals (ReadySet): say so when more is there.
  return static_cast<std::size_t>(n) == buffer.size() || (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
}

void Session::on_input_end(const std::string& reason) {
  // End of input (FIN, or TLS's close_notify) or a reset: the peer is gone
  // or done sending. The requests already read are answered, then the
  // connection closes.
  input_done_ = true;
  if (stage_ == Stage::kOpen && state_.input_held()) {
    input_ended_ = true;  // after the LIST (or AUTH) and the requests held behind it
    return;
  }
  if (stage_ == Stage::kOpen) end(stats::EndCause::kClose, reason);
  if (stage_ == Stage::kDraining && state_.unwritten() == 0) close_now(stats::EndCause::kClose);
}

bool Session::on_readable_tls(std::uint32_t events) {
  std::string& buffer = host_.read_buffer();
  std::size_t got = 0;
  bool drained = false;  // OpenSSL found the socket empty
  std::optional<std::string> ended;
  // Whole records only: with room for the largest, SSL_read leaves none of
  // a record's bytes inside OpenSSL, where the ReadySet cannot see them.
  while (buffer.size() - got >= kTlsRecordBytes) {
    ERR_clear_error();
    const int n = SSL_read(ssl_.get(), buffer.data() + got, static_cast<int>(buffer.size() - got));
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    const int error = SSL_get_error(ssl_.get(), n);
    if (error == SSL_ERROR_WANT_READ) {
      drained = true;
    } else if (error == SSL_ERROR_WANT_WRITE) {
      drained = true;
      tls_read_wants_write_ = true;  // update_interest() watches for room
    } else if (error == SSL_ERROR_ZERO_RETURN) {
      ended = "end of input";
    } else if (error == SSL_ERROR_SYSCALL) {
      ended = errno != 0 ? std::string(std::strerror(errno)) : std::string("end of input");
    } else {
      const unsigned long code = ERR_peek_last_error();
      const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
      ended = std::string("TLS error: ") + (reason != nullptr ? reason : "unknown");
    }
    ERR_clear_error();
    break;
  }
  if (got > 0 && stage_ == Stage::kOpen) consume(std::string_view(buffer.data(), got));
  if (ended && stage_ != Stage::kClosed) {
    on_input_end(*ended);
    return false;
  }
  // Stopped with room for less than a record: more may wait in the socket.
  return !drained || (got > 0 && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
}

ssize_t Session::write_some(const char* data, std::size_t size) {
  if (!ssl_) return ::send(fd_.get(), data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
  ERR_clear_error();
  const int n = SSL_write(ssl_.get(), data, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
  if (n > 0) return n;
  const int error = SSL_get_error(ssl_.get(), n);
  const int saved = errno;
  ERR_clear_error();
  if (error == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
  } else if (error == SSL_ERROR_SYSCALL && saved != 0) {
    errno = saved;
  } else {
    // A closed connection, a TLS error, or a write that wants to read
    // (renegotiation, which the context refuses): the session ends.
    errno = error == SSL_ERROR_SYSCALL || error == SSL_ERROR_ZERO_RETURN ? EPIPE : EPROTO;
  }
  return -1;
}

void Session::resume_input() {
  if (stage_ != Stage::kOpen || state_.input_held()) return;
  if (probe_asked_) {
    end(stats::EndCause::kQuit, "admin probe answered");
    return;
  }
  reads_paused_ = false;
  if (waited_for_log_) {
    waited_for_log_ = false;
    state_.last_activity = dispatcher_.now();  // the lines held meanwhile are read from now on
  }
  if (!held_input_.empty()) {
    const std::string input = std::move(held_input_);
    held_input_.clear();
    consume(input);  // may start another LIST (or AUTH), which holds the rest again
    if (stage_ != Stage::kOpen || state_.input_held()) return;
  }
  if (input_ended_) {
    end(stats::EndCause::kClose, "end of input");
    return;
  }
  update_interest();
}

void Session::post_continue() {
  if (resume_posted_) return;
  resume_posted_ = true;
  asio::post(io_, [self = shared_from_this()] {
    self->resume_posted_ = false;
    if (self->stage_ != Stage::kOpen) return;
    if (self->state_.list) {
      // Through end_turn, as every write: the journal goes first.
      self->mark_dirty();
    } else {
      self->resume_input();
    }
    self->host_.end_turn();
  });
}

bool Session::peer_line(std::string_view data) {
  static constexpr std::string_view kPeer = "PEER ";
  const std::size_t known = std::min(first_bytes_.size() + data.size(), kPeer.size());
  const std::string joined = first_bytes_ + std::string(data.substr(0, known - std::min(known, first_bytes_.size())));
  if (joined.compare(0, known, kPeer, 0, known) != 0) {
    peer_candidate_ = false;  // a client's first bytes
    return false;
  }
  first_bytes_.append(data);
  const std::size_t newline = first_bytes_.find('\n');
  if (newline == std::string::npos && first_bytes_.size() <= cluster::kMaxPeerHelloBytes + 1) return true;
  // The whole line (or more than any hello: the host refuses it).
  const std::size_t end = newline == std::string::npos ? first_bytes_.size() : newline;
  const std::string line = first_bytes_.substr(0, end);
  std::string rest = end < first_bytes_.size() ? first_bytes_.substr(end + 1) : std::string();
  first_bytes_ = std::string();
  // Out of the set and the registry, not a client's session: what the
  // dispatcher began ends unseen by the log (it was never opened there).
  if (registered_) {
    ready_.remove(fd_.get());
    registered_ = false;
  }
  UniqueFd fd = std::move(fd_);
  if (timer_) timer_->cancel();
  dispatcher_.end_session(state_, stats::EndCause::kClose);
  stage_ = Stage::kClosed;
  account_output();
  host_.forget(key_);
  host_.hand_over_peer_link(std::move(fd), state_.address, line, std::move(rest));
  return true;
}

void Session::consume(std::string_view data) {
  if (state_.dialect == protocol::Dialect::kUndecided) {
    if (peer_candidate_ && peer_line(data)) return;
    first_bytes_.append(data);
    state_.dialect = protocol::detect_dialect(first_bytes_);
    if (state_.dialect == protocol::Dialect::kUndecided) return;
    std::string first = std::move(first_bytes_);
    first_bytes_ = std::string();
    if (state_.dialect == protocol::Dialect::kAce) {
      handle_ace(first);
    } else {
      handle_v1(first);
    }
  } else if (state_.dialect == protocol::Dialect::kAce) {
    handle_ace(data);
  } else {
    handle_v1(data);
  }
  close_if_output_overflows();
}

void Session::handle_v1(std::string_view data) {
  bool saw_request = false;
  std::string_view line;
  while (stage_ == Stage::kOpen && !state_.quit && !state_.input_held() && !probe_asked_) {
    const auto framed = framer_.next_from(data, line);
    if (framed == protocol::LineFramer::Status::kNeedMore) break;
    mark_dirty();
    if (framed == protocol::LineFramer::Status::kLineTooLong) {
      dispatcher_.end_with_error(state_, stats::EndCause::kError, protocol::ErrorCode::kLineTooLong,
                                 "request line longer than 4096 bytes");
      break;
    }
    if (framed == protocol::LineFramer::Status::kNul) {
      dispatcher_.end_with_error(state_, stats::EndCause::kError, protocol::ErrorCode::kBadRequest,
                                 "NUL byte in request line");
      break;
    }
    if (admin_probe_ && !admit_probe_line(line)) break;
    // An empty line is not activity: a stream of newlines must not keep a
    // dead client's permits.
    saw_request = dispatcher_.handle_line(state_, line) || saw_request;
    // Checked per line: one read of `LIST` lines could otherwise produce
    // far more than the cap before the read is done.
    if (close_if_output_overflows()) return;
  }
  // An admin probe's ask is its last line: the session ends once it is
  // answered (here, or in resume_input() when it waits for the log).
  if (probe_asked_) {
    if (stage_ == Stage::kOpen && !state_.input_held()) end(stats::EndCause::kQuit, "admin probe answered");
    return;
  }
  // Behind a LIST that streams, the rest waits until its END; behind an
  // AUTH being checked, until its answer.
  if (state_.input_held() && stage_ == Stage::kOpen) held_input_.append(data);
  // Only a complete request line is activity: bytes that never end one are
  // not.
  if (saw_request) state_.last_activity = dispatcher_.now();
}

void Session::handle_ace(std::string_view data) {
  ace_.buffer().append(data);
  while (stage_ == Stage::kOpen) {
    const auto token = ace_.next();
    if (token == protocol::AceParser::Token::kNeedMore) return;
    dispatcher_.handle_ace(state_, token, ace_.name());
    mark_dirty();
  }
}

bool Session::admit_probe_line(std::string_view line) {
  switch (classify_probe_line(line)) {
    case ProbeLine::kHandshake:
      return true;
    case ProbeLine::kAsk:
      probe_asked_ = true;
      return true;
    case ProbeLine::kRefused:
      break;
  }
  refuse_probe();
  return false;
}

void Session::refuse_probe() {
  host_.admin_probe_refused(state_.peer);
  dispatcher_.end_with_error(state_, stats::EndCause::kClose, protocol::ErrorCode::kLimit, "too many connections");
}

bool Session::close_if_output_overflows() {
  account_output();
  if (state_.unwritten() > kMaxOutputBytes) {
    logs_.log(logs_.overflow, "session {} ({}): closed, {} bytes of answers unread", state_.id, state_.peer,
              state_.unwritten());
    close_now(stats::EndCause::kOverflow);
    return true;
  }
  if (host_.over_output_cap()) host_.shed_output_if_over_cap();
  return stage_ == Stage::kClosed;
}

void Session::account_output() {
  const std::size_t pending = stage_ == Stage::kClosed ? 0 : state_.unwritten();
  host_.account_output(accounted_output_, pending);
  accounted_output_ = pending;
}

void Session::mark_dirty() {
  if (dirty_ || stage_ == Stage::kClosed) return;
  dirty_ = true;
  host_.mark_dirty(shared_from_this());
}

void Session::flush() {
  dirty_ = false;
  if (stage_ == Stage::kClosed || write_waiting_) return;
  std::string& out = state_.out;
  std::size_t streamed = 0;
  for (;;) {
    const std::size_t sendable = dispatcher_.sendable_end(state_);
    while (state_.out_sent < sendable) {
      const ssize_t n = write_some(out.data() + state_.out_sent, sendable - state_.out_sent);
      const int error = n < 0 ? errno : 0;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        // A peer that keeps a standing backlog must not make the output grow
        // by what it has already read: drop the written prefix once it is large.
        if (state_.out_sent > kKeepOutputCapacity && state_.out_sent > out.size() / 2) {
          out.erase(0, state_.out_sent);
          for (SessionState::AnswerHold& h : state_.holds) h.offset -= state_.out_sent;
          state_.out_sent = 0;
        }
        account_output();
        write_waiting_ = true;
        update_interest();
        return;
      }
      if (error != 0) {
        if (stage_ == Stage::kOpen) end(stats::EndCause::kClose, std::strerror(error));
        close_now(stats::EndCause::kClose);
        return;
      }
      state_.out_sent += static_cast<std::size_t>(n);
      // The peer takes a LIST's lines: that is what keeps its session alive
      // while requests wait behind the LIST (Dispatcher::idle_timeout).
      if (state_.list) state_.last_activity = dispatcher_.now();
    }
    if (sendable < out.size()) {
      account_output();
      host_.hold(shared_from_this());  // the rest waits for the journal
      return;
    }
    out.clear();
    state_.out_sent = 0;
    state_.holds.clear();
    if (!state_.list || stage_ != Stage::kOpen) break;
    if (streamed >= kStreamBytesPerTurn) {
      post_continue();  // a long LIST to a fast reader must not hold up everyone else
      break;
    }
    dispatcher_.produce_list(state_);
    streamed += out.size();
    if (!state_.list) post_continue();  // its END: handle what was read behind it
  }
  if (out.capacity() > kKeepOutputCapacity) out.shrink_to_fit();
  account_output();
  if (stage_ == Stage::kDraining) {
    // Everything said: shut the sending side (TLS first: close_notify),
    // then discard input until the peer closes or the drain time is up.
    if (ssl_) {
      ERR_clear_error();
      (void)SSL_shutdown(ssl_.get());
      ERR_clear_error();
    }
    ::shutdown(fd_.get(), SHUT_WR);
    if (input_done_) {
      close_now(stats::EndCause::kClose);  // the peer has closed already (ended: not counted again)
      return;
    }
    arm_close_deadline(kDrainTime);
    update_interest();
  }
}

void Session::timer_changed() {
  if (Dispatcher::wants_heartbeat(state_)) {
    arm_heartbeat();
  } else {
    arm_idle_timer();
  }
}

void Session::arm_heartbeat() {
  if (!timer_) timer_.emplace(io_);
  timer_->expires_after(Dispatcher::kAceHeartbeat);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::arm_idle_timer() {
  if (stage_ != Stage::kOpen) return;
  if (admin_probe_) {
    if (!timer_) timer_.emplace(io_);
    timer_->expires_at(probe_deadline_);
    timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
      if (!error) self->on_timer();
    });
    return;
  }
  const auto timeout = dispatcher_.idle_timeout(state_);
  if (timeout == Clock::duration::zero()) {
    if (timer_) timer_->cancel();
    return;
  }
  if (!timer_) timer_.emplace(io_);
  timer_->expires_at(state_.last_activity + timeout);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::on_timer() {
  switch (stage_) {
    case Stage::kClosed:
      return;
    case Stage::kDraining:
      close_now(stats::EndCause::kClose);  // already ended: not counted again
      break;
    case Stage::kOpen:
      if (admin_probe_) {
        refuse_probe();  // its time is up
      } else if (Dispatcher::wants_heartbeat(state_)) {
        dispatcher_.ace_heartbeat(state_);
        mark_dirty();
        arm_heartbeat();
      } else {
        idle_deadline_check();
      }
      break;
  }
  host_.end_turn();
}

void Session::idle_deadline_check() {
  const auto timeout = dispatcher_.idle_timeout(state_);
  if (timeout == Clock::duration::zero()) return;
  if (state_.log.pending || state_.cluster_pending) {
    // (Cluster mode.) The session's command waits for the log (no leader
    // yet, a failover), or its CLUSTER ADD for the new server to catch up,
    // and its later lines, PINGs too, are not read until it is answered:
    // the silence is the server's, not the client's. Its client gets a full
    // timeout from the answer on; a client that is gone meanwhile is ended
    // by the log's own expiry.
    state_.last_activity = dispatcher_.now();
    waited_for_log_ = true;
    arm_idle_timer();
    return;
  }
  if (dispatcher_.now() - state_.last_activity >= timeout) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    if (state_.list) {
      logs_.log(logs_.overflow, "session {} ({}): took no line of a LIST for {} ms, closed and released", state_.id,
                state_.peer, ms);
      end(stats::EndCause::kOverflow, "stopped reading");
      return;
    }
    logs_.log(logs_.timeout, "session {} ({}): no request for {} ms, closed and released", state_.id, state_.peer, ms);
    end(stats::EndCause::kTimeout, "session timeout");
    return;
  }
  arm_idle_timer();
}

void Session::arm_close_deadline(Clock::duration after) {
  if (!timer_) timer_.emplace(io_);
  timer_->expires_after(after);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::end(stats::EndCause cause, std::string_view reason) {
  if (stage_ != Stage::kOpen) return;
  stage_ = Stage::kDraining;
  spdlog::debug("session {} ({}): ending: {}", state_.id, state_.peer, reason);
  // Requests read behind a LIST in progress are dropped (the dispatcher
  // cuts the LIST short).
  held_input_ = std::string();
  // A peer that never reads must not keep an ended session (and its
  // connection slot) alive: flush() shortens this once all is written.
  arm_close_deadline(kLastWordsTime);
  dispatcher_.end_session(state_, cause);
  mark_dirty();
}

void Session::shut_down() {
  if (stage_ != Stage::kOpen) return;
  dispatcher_.end_with_error(state_, stats::EndCause::kShutdown, protocol::ErrorCode::kShutdown,
                             "server is shutting down");
}

void Session::close_now(stats::EndCause cause) {
  if (stage_ == Stage::kClosed) return;
  if (stage_ == Stage::kOpen) end(cause, "closed");
  stage_ = Stage::kClosed;
  if (timer_) timer_->cancel();
  if (registered_) {
    ready_.remove(fd_.get());  // a copy of the descriptor elsewhere would keep it in the set
    registered_ = false;
  }
  ssl_.reset();
  fd_.reset();
  // Nothing more will be written: the answers' memory goes now.
  state_.out = std::string();
  state_.out_sent = 0;
  account_output();
  host_.forget(key_);
}

void Session::completion_added() {
  mark_dirty();
  close_if_output_overflows();
}

void Session::input_resumable() {
  mark_dirty();
  post_continue();  // the requests read behind the AUTH, in a turn of their own
}

}  // namespace netsem::server
