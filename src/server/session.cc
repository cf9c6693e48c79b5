// Session I/O and lifetime: readiness waits on a non-blocking socket, reads
// into the server's shared buffer, batched writes, the one timer (idle
// timeout, ACE heartbeat or drain deadline), and the orderly end of a session
// (permits back at once, last answers written, sending side shut, input
// discarded a moment so the peer reads our last line rather than a reset).
#include "server/session.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "server/server.h"

namespace netsem::server {

namespace {

// How long an ending session discards input after shutting its sending side.
constexpr auto kDrainTime = std::chrono::milliseconds(500);
// How long an ending session may take to write its last answers to a peer
// that reads slowly or not at all: past it, the connection is closed anyway.
constexpr auto kLastWordsTime = std::chrono::seconds(3);
// The shortest session timeout applied to ACE holders.
constexpr auto kAceMinIdleTimeout = std::chrono::seconds(10);
// A buffer that grew for a burst is given back once it is this large: an
// idle session keeps at most this much (see docs/configuration.md, Memory).
constexpr std::size_t kKeepOutputCapacity = 4 << 10;
// How much of a LIST one flush produces before it lets other events run.
constexpr std::size_t kStreamBytesPerTurn = 256 << 10;
// SO_SNDBUF of every session (Linux doubles it for its bookkeeping).
constexpr int kSocketSendBuffer = 64 << 10;

}  // namespace

Session::Session(Server& server, asio::ip::tcp::socket socket, SessionId id, std::string peer)
    : server_(server), socket_(std::move(socket)), id_(id), peer_(std::move(peer)) {}

Session::~Session() = default;

void Session::start() {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);
  // The kernel's share of a non-reader's backlog, bounded too: without it,
  // send buffers autotune up to net.ipv4.tcp_wmem's maximum (4 MiB) each.
  socket_.set_option(asio::socket_base::send_buffer_size(kSocketSendBuffer), ignored);
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  last_activity_ = Clock::now();
  server_.table().open_session(id_);
  table_open_ = true;
  arm_idle_timer();
  wait_readable();
}

void Session::wait_readable() {
  if (read_waiting_ || state_ == State::kClosed) return;
  read_waiting_ = true;
  socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const std::error_code& error) {
    self->read_waiting_ = false;
    if (self->state_ == State::kClosed) return;
    if (error) {
      self->close_now();
    } else {
      self->on_readable();
    }
    self->server_.end_turn();
  });
}

void Session::on_readable() {
  std::string& buffer = server_.read_buffer();
  std::error_code error;
  const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), error);
  if (error == asio::error::would_block || error == asio::error::try_again) {
    wait_readable();
    return;
  }
  if (error) {
    // End of input (FIN) or a reset: the peer is gone or done sending. The
    // requests already read are answered, then the connection closes.
    if (state_ == State::kOpen && list_) {
      input_ended_ = true;  // after the LIST and the requests held behind it
      return;
    }
    if (state_ == State::kOpen) {
      end(error == asio::error::eof ? "end of input" : error.message());
    }
    if (state_ == State::kDraining && out_sent_ == out_.size()) close_now();
    return;
  }
  if (state_ == State::kOpen) consume(std::string_view(buffer.data(), n));
  // Behind a streaming LIST nothing more is read: the peer's requests wait
  // in its socket, not in the server (resume_input() reads on).
  if (state_ != State::kClosed && !list_) wait_readable();
}

void Session::resume_input() {
  if (state_ != State::kOpen || list_) return;
  if (!held_input_.empty()) {
    const std::string input = std::move(held_input_);
    held_input_.clear();
    consume(input);  // may start another LIST, which holds the rest again
    if (state_ != State::kOpen || list_) return;
  }
  if (input_ended_) {
    end("end of input");
    return;
  }
  wait_readable();
}

void Session::post_continue() {
  if (resume_posted_) return;
  resume_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->resume_posted_ = false;
    if (self->state_ != State::kOpen) return;
    if (self->list_) {
      // Through end_turn, as every write: the journal goes first.
      self->mark_dirty();
    } else {
      self->resume_input();
    }
    self->server_.end_turn();
  });
}

void Session::consume(std::string_view data) {
  if (dialect_ == protocol::Dialect::kUndecided) {
    first_bytes_.append(data);
    dialect_ = protocol::detect_dialect(first_bytes_);
    if (dialect_ == protocol::Dialect::kUndecided) return;
    std::string first = std::move(first_bytes_);
    first_bytes_ = std::string();
    if (dialect_ == protocol::Dialect::kAce) {
      handle_ace(first);
    } else {
      handle_v1(first);
    }
  } else if (dialect_ == protocol::Dialect::kAce) {
    handle_ace(data);
  } else {
    handle_v1(data);
  }
  close_if_output_overflows();
}

bool Session::close_if_output_overflows() {
  account_output();
  if (out_.size() - out_sent_ > kMaxOutputBytes) {
    server_.log_limited(server_.peer_logs().overflow, "session {} ({}): closed, {} bytes of answers unread", id_, peer_,
                        out_.size() - out_sent_);
    close_now();
    return true;
  }
  server_.shed_output_if_over_cap();
  return state_ == State::kClosed;
}

void Session::account_output() {
  const std::size_t pending = state_ == State::kClosed ? 0 : out_.size() - out_sent_;
  server_.account_output(accounted_output_, pending);
  accounted_output_ = pending;
}

void Session::mark_dirty() {
  if (dirty_ || state_ == State::kClosed) return;
  dirty_ = true;
  server_.mark_dirty(shared_from_this());
}

std::size_t Session::sendable_end() {
  if (holds_.empty()) return out_.size();
  const std::uint64_t answerable = server_.answerable_sequence();
  std::erase_if(holds_, [&](const AnswerHold& h) { return h.sequence <= answerable || h.offset >= out_.size(); });
  std::size_t end = out_.size();
  for (const AnswerHold& h : holds_) end = std::min(end, h.offset);
  return end;
}

void Session::flush() {
  dirty_ = false;
  if (state_ == State::kClosed || write_waiting_) return;
  std::size_t streamed = 0;
  for (;;) {
    const std::size_t sendable = sendable_end();
    while (out_sent_ < sendable) {
      std::error_code error;
      const std::size_t n = socket_.write_some(asio::buffer(out_.data() + out_sent_, sendable - out_sent_), error);
      if (error == asio::error::would_block || error == asio::error::try_again) {
        // A peer that keeps a standing backlog must not make out_ grow by what
        // it has already read: drop the written prefix once it is large.
        if (out_sent_ > kKeepOutputCapacity && out_sent_ > out_.size() / 2) {
          out_.erase(0, out_sent_);
          for (AnswerHold& h : holds_) h.offset -= out_sent_;
          out_sent_ = 0;
        }
        account_output();
        wait_writable();
        return;
      }
      if (error) {
        if (state_ == State::kOpen) end(error.message());
        close_now();
        return;
      }
      out_sent_ += n;
      // The peer takes a LIST's lines: that is what keeps its session alive
      // while requests wait behind the LIST (idle_timeout()).
      if (list_) last_activity_ = Clock::now();
    }
    if (sendable < out_.size()) {
      account_output();
      server_.hold(shared_from_this());  // the rest waits for the journal
      return;
    }
    out_.clear();
    out_sent_ = 0;
    holds_.clear();
    if (!list_ || state_ != State::kOpen) break;
    if (streamed >= kStreamBytesPerTurn) {
      post_continue();  // a long LIST to a fast reader must not hold up everyone else
      break;
    }
    produce_list();
    streamed += out_.size();
    if (!list_) post_continue();  // its END: handle what was read behind it
  }
  if (out_.capacity() > kKeepOutputCapacity) out_.shrink_to_fit();
  account_output();
  if (state_ == State::kDraining) {
    // Everything said: shut the sending side, then discard input until the
    // peer closes or the drain time is up.
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    arm_close_deadline(kDrainTime);
    wait_readable();
  }
}

void Session::wait_writable() {
  write_waiting_ = true;
  socket_.async_wait(asio::socket_base::wait_write, [self = shared_from_this()](const std::error_code& error) {
    self->write_waiting_ = false;
    if (self->state_ == State::kClosed) return;
    if (error) {
      self->close_now();
    } else {
      self->flush();
    }
    self->server_.end_turn();
  });
}

Session::Clock::duration Session::idle_timeout() const {
  const auto configured = std::chrono::milliseconds(server_.config().session_timeout_ms);
  if (list_) {
    // Requests wait behind the LIST, so taking its lines is the activity.
    const Clock::duration stall = kStreamStallTime;
    return configured.count() > 0 ? std::min<Clock::duration>(configured, stall) : stall;
  }
  if (configured.count() <= 0) return Clock::duration::zero();
  if (dialect_ != protocol::Dialect::kAce) return configured;
  switch (ace_state_) {
    case AceState::kAwaitAcquire:
      return configured;  // an unfinished `acquire:` is not activity
    case AceState::kQueued:
      return Clock::duration::zero();  // a queued ACE client has nothing to send
    case AceState::kHolding:
      // ACE holders ping every 3 s; a shorter timeout would drop healthy ones.
      return configured < kAceMinIdleTimeout ? Clock::duration::zero() : configured;
  }
  return configured;
}

void Session::arm_idle_timer() {
  if (state_ != State::kOpen) return;
  const auto timeout = idle_timeout();
  if (timeout == Clock::duration::zero()) {
    if (timer_) timer_->cancel();
    return;
  }
  if (!timer_) timer_.emplace(socket_.get_executor());
  timer_->expires_at(last_activity_ + timeout);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::on_timer() {
  switch (state_) {
    case State::kClosed:
      return;
    case State::kDraining:
      close_now();
      break;
    case State::kOpen:
      if (dialect_ == protocol::Dialect::kAce && ace_state_ == AceState::kQueued) {
        ace_heartbeat();
      } else {
        idle_deadline_check();
      }
      break;
  }
  server_.end_turn();
}

void Session::idle_deadline_check() {
  const auto timeout = idle_timeout();
  if (timeout == Clock::duration::zero()) return;
  if (Clock::now() - last_activity_ >= timeout) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    if (list_) {
      server_.log_limited(server_.peer_logs().overflow,
                          "session {} ({}): took no line of a LIST for {} ms, closed and released", id_, peer_, ms);
      end("stopped reading");
      return;
    }
    server_.log_limited(server_.peer_logs().timeout, "session {} ({}): no request for {} ms, closed and released", id_,
                        peer_, ms);
    end("session timeout");
    return;
  }
  arm_idle_timer();
}

void Session::arm_close_deadline(Clock::duration after) {
  if (!timer_) timer_.emplace(socket_.get_executor());
  timer_->expires_after(after);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::end(std::string_view reason) {
  if (state_ != State::kOpen) return;
  state_ = State::kDraining;
  spdlog::debug("session {} ({}): ending: {}", id_, peer_, reason);
  // A LIST in progress is cut short, and requests read behind it dropped.
  list_.reset();
  held_input_ = std::string();
  // A peer that never reads must not keep an ended session (and its
  // connection slot) alive: flush() shortens this once all is written.
  arm_close_deadline(kLastWordsTime);
  if (table_open_) {
    table_open_ = false;
    server_.table().close_session(id_, server_.completions());
    server_.dispatch_completions();
  }
  mark_dirty();
}

void Session::end_with_error(protocol::ErrorCode code, std::string_view message) {
  if (state_ != State::kOpen) return;
  if (dialect_ != protocol::Dialect::kAce) protocol::append_error(out_, {}, code, message);
  end(message);
}

void Session::shut_down() {
  if (state_ != State::kOpen) return;
  end_with_error(protocol::ErrorCode::kShutdown, "server is shutting down");
}

void Session::close_now() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kOpen) end("closed");
  state_ = State::kClosed;
  if (timer_) timer_->cancel();
  std::error_code ignored;
  socket_.close(ignored);
  // Nothing more will be written: the answers' memory goes now.
  out_ = std::string();
  out_sent_ = 0;
  account_output();
  server_.forget(id_);
}

void Session::deliver(const Completion& completion) {
  if (state_ != State::kOpen) return;
  // A completion caused by a change the journal has not written yet (a WAIT
  // granted by a POST, say) waits for it, like the answer to the change.
  if (const std::uint64_t dependency = server_.answer_dependency()) hold_from(out_.size(), dependency);
  if (dialect_ == protocol::Dialect::kAce) {
    deliver_ace(completion);
    return;
  }
  switch (completion.type) {
    case Completion::Type::kGranted:
      protocol::append_ok_number(out_, completion.tag, completion.fence);
      break;
    case Completion::Type::kTimedOut:
      protocol::append_timeout(out_, completion.tag);
      break;
    case Completion::Type::kCancelled:
      protocol::append_cancelled(out_, completion.tag);
      break;
    case Completion::Type::kTooMany:
      protocol::append_error(out_, completion.tag, protocol::ErrorCode::kTooMany,
                             "count exceeds the semaphore's max after a reload");
      break;
    case Completion::Type::kNotFound:
      protocol::append_error(out_, completion.tag, protocol::ErrorCode::kNotFound,
                             "the semaphore left the configuration: WAIT of an undefined name");
      break;
    case Completion::Type::kNoFence:
      protocol::append_error(out_, completion.tag, protocol::ErrorCode::kLimit, kNoFenceDetail);
      break;
  }
  mark_dirty();
  close_if_output_overflows();
}

}  // namespace netsem::server
