// The ACE dialect on a session: one `acquire:<name>|` per connection, `wait|`
// heartbeats while queued, `locked|` on grant, `wait|` keep-alives from the
// holder, `release|` answered `ok|`, then the close. ACE's client is strict:
// every token goes out whole, nothing follows `locked|` but the `ok|`, and
// the session never writes a `*` line; anything unexpected closes silently.
#include <spdlog/spdlog.h>

#include "protocol/names.h"
#include "server/server.h"
#include "server/session.h"

namespace netsem::server {

namespace {
// ACE sessions have one request at a time; its tag is internal.
constexpr std::string_view kAceTag = "ace";
// The ACE client expects a `wait|` about once a second while queued.
constexpr auto kAceHeartbeat = std::chrono::seconds(1);
}  // namespace

void Session::handle_ace(std::string_view data) {
  // Input ACE's client never sends closes the session. Tokens not yet written
  // are dropped first: the client must not read `locked|` for a grant that the
  // close gives back at once (`acquire:x|garbage|` in one read).
  const auto refuse = [this](std::string_view reason) {
    out_.resize(out_sent_);
    end(reason);
  };
  ace_.buffer().append(data);
  for (;;) {
    if (state_ != State::kOpen) return;
    const auto token = ace_.next();
    switch (token) {
      case protocol::AceParser::Token::kNeedMore:
        return;
      case protocol::AceParser::Token::kBad:
        server_.log_limited(server_.peer_logs().ace, "session {} ({}): ACE: invalid input, closed", id_, peer_);
        refuse("ACE: invalid input");
        return;
      case protocol::AceParser::Token::kWait:
        last_activity_ = Clock::now();
        break;
      case protocol::AceParser::Token::kRelease: {
        last_activity_ = Clock::now();
        if (ace_state_ != AceState::kHolding) {
          refuse("ACE: release while not holding");
          return;
        }
        std::int64_t value = 0;
        const auto error = server_.table().release(id_, ace_name_, 1, value, server_.completions());
        server_.dispatch_completions();
        if (error == protocol::ErrorCode::kNone) write_token(protocol::kAceOk);
        end("ACE: released");
        return;
      }
      case protocol::AceParser::Token::kAcquire: {
        last_activity_ = Clock::now();
        if (ace_state_ != AceState::kAwaitAcquire || protocol::check_name(ace_.name()) != protocol::ErrorCode::kNone) {
          refuse("ACE: unexpected acquire");
          return;
        }
        ++server_.counters().requests;
        ace_name_.assign(ace_.name());
        TakeRequest take;
        take.session = id_;
        take.tag = kAceTag;
        take.name = ace_name_;
        take.now = last_activity_;
        const TakeResult result = server_.table().take(take, server_.completions());
        server_.dispatch_completions();
        if (result.type == TakeResult::Type::kGranted) {
          ace_state_ = AceState::kHolding;
          write_token(protocol::kAceLocked);
          arm_idle_timer();
        } else if (result.type == TakeResult::Type::kQueued) {
          ace_state_ = AceState::kQueued;
          if (!timer_) timer_.emplace(socket_.get_executor());
          timer_->expires_after(kAceHeartbeat);
          timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
            if (!error) self->on_timer();
          });
        } else {
          server_.log_limited(server_.peer_logs().ace, "session {} ({}): ACE acquire refused: {}", id_, peer_,
                              protocol::error_code_name(result.error));
          end("ACE: acquire refused");
          return;
        }
        break;
      }
    }
  }
}

void Session::deliver_ace(const Completion& completion) {
  if (completion.type != Completion::Type::kGranted || ace_state_ != AceState::kQueued) {
    end("ACE: request ended");
    return;
  }
  ace_state_ = AceState::kHolding;
  write_token(protocol::kAceLocked);
  // The holder's keep-alives are due from the grant on, not from the
  // acquire: a long wait in the queue is not silence.
  last_activity_ = Clock::now();
  arm_idle_timer();  // replaces the heartbeat
}

void Session::ace_heartbeat() {
  // At most one `wait|` a second and never a backlog: skip a beat while an
  // earlier token is still unwritten.
  if (out_sent_ == out_.size()) write_token(protocol::kAceWait);
  timer_->expires_after(kAceHeartbeat);
  timer_->async_wait([self = shared_from_this()](const std::error_code& error) {
    if (!error) self->on_timer();
  });
}

void Session::write_token(std::string_view token) {
  out_.append(token);
  mark_dirty();
}

}  // namespace netsem::server
