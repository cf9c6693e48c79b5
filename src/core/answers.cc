// The mapping from table results to v1 lines and ACE tokens, shared by the
// single server's dispatcher and the replicated one (answers.h).
#include "core/answers.h"

#include <optional>

#include "common/log.h"

namespace netsem::server::answers {

using protocol::ErrorCode;
using protocol::Verb;

namespace {

std::string_view detail_for(Verb verb, ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      if (verb == Verb::kCancel) return "no pending request with that tag";
      if (verb == Verb::kKick) return "no such session";
      return "no such semaphore";
    case ErrorCode::kNotHeld:
      return "this session holds fewer permits than that";
    case ErrorCode::kOverflow:
      return "value would exceed max";
    case ErrorCode::kTooMany:
      return "count exceeds the semaphore's max";
    case ErrorCode::kExists:
      return "a semaphore of that name exists";
    case ErrorCode::kBusy:
      return "the semaphore is defined, held or waited on";
    case ErrorCode::kDuplicateTag:
      return "the tag names a request still pending";
    case ErrorCode::kLimit:
      return "a server limit was reached";
    default:
      return "request refused";
  }
}

}  // namespace

void append_request_error(std::string& out, std::string_view tag, Verb verb, std::string_view name, ErrorCode code,
                          std::string_view detail) {
  if (detail.empty()) detail = detail_for(verb, code);
  std::string message(detail);
  const bool names_semaphore = verb == Verb::kAcquire || verb == Verb::kWait || verb == Verb::kRelease ||
                               verb == Verb::kPost || verb == Verb::kCreate || verb == Verb::kDelete ||
                               verb == Verb::kHolders || verb == Verb::kWaiters;
  if (names_semaphore && code != ErrorCode::kDuplicateTag && code != ErrorCode::kLimit && code != ErrorCode::kAuth) {
    message += ": ";
    protocol::append_encoded_name(message, name);
  }
  protocol::append_error(out, tag, code, message);
}

void append_take(SessionState& session, std::string_view tag, Verb verb, std::string_view name,
                 const TakeResult& result) {
  switch (result.type) {
    case TakeResult::Type::kGranted:
      protocol::append_ok_number(session.out, tag, result.fence);
      return;
    case TakeResult::Type::kQueued:
      if (session.queued_lines) protocol::append_queued(session.out, tag, result.position);
      return;
    case TakeResult::Type::kTimedOut:
      protocol::append_timeout(session.out, tag);
      return;
    case TakeResult::Type::kError:
      append_request_error(session.out, tag, verb, name, result.error,
                           result.no_fence ? kNoFenceDetail : std::string_view());
      return;
  }
}

void ace_take(SessionState& session, const TakeResult& result, PeerLogs& logs) {
  if (result.type == TakeResult::Type::kGranted) {
    session.ace_stage = AceStage::kHolding;
    session.out.append(protocol::kAceLocked);
    session.events->timer_changed();
  } else if (result.type == TakeResult::Type::kQueued) {
    session.ace_stage = AceStage::kQueued;
    session.events->timer_changed();
  } else {
    logs.log(logs.ace, "session {} ({}): ACE acquire refused: {}", session.id, session.peer,
             protocol::error_code_name(result.error));
    session.events->end(stats::EndCause::kError, "ACE: acquire refused");
  }
}

void ace_released(SessionState& session, ErrorCode error) {
  if (error == ErrorCode::kNone) session.out.append(protocol::kAceOk);
  session.events->end(stats::EndCause::kQuit, "ACE: released");
}

void append_hello(SessionState& session, std::string_view tag, PeerLogs& logs) {
  std::string text = std::string(kHelloVersion) + std::to_string(session.id);
  protocol::append_ok_text(session.out, tag, text);
  if (!session.label.empty()) {
    logs.event(logs.sessions, "session label",
               {{"session", session.id}, {"peer", session.peer}, {"label", session.label}});
  }
}

namespace {

void deliver_ace(SessionState& session, const Completion& completion, std::chrono::steady_clock::time_point now) {
  if (completion.type != Completion::Type::kGranted || session.ace_stage != AceStage::kQueued) {
    session.events->end(stats::EndCause::kError, "ACE: request ended");
    return;
  }
  session.ace_stage = AceStage::kHolding;
  session.out.append(protocol::kAceLocked);
  // The holder's keep-alives are due from the grant on, not from the
  // acquire: a long wait in the queue is not silence.
  session.last_activity = now;
  session.events->timer_changed();  // the idle timeout replaces the heartbeat
  session.events->completion_added();
}

}  // namespace

void deliver(SessionState& session, const Completion& completion, std::chrono::steady_clock::time_point now) {
  if (session.dialect == protocol::Dialect::kAce) {
    deliver_ace(session, completion, now);
    return;
  }
  switch (completion.type) {
    case Completion::Type::kGranted:
      protocol::append_ok_number(session.out, completion.tag, completion.fence);
      break;
    case Completion::Type::kTimedOut:
      protocol::append_timeout(session.out, completion.tag);
      break;
    case Completion::Type::kCancelled:
      protocol::append_cancelled(session.out, completion.tag);
      break;
    case Completion::Type::kTooMany:
      protocol::append_error(session.out, completion.tag, ErrorCode::kTooMany,
                             "count exceeds the semaphore's max after a reload");
      break;
    case Completion::Type::kNotFound:
      protocol::append_error(session.out, completion.tag, ErrorCode::kNotFound,
                             "the semaphore left the configuration: WAIT of an undefined name");
      break;
    case Completion::Type::kNoFence:
      protocol::append_error(session.out, completion.tag, ErrorCode::kLimit, kNoFenceDetail);
      break;
  }
  session.events->completion_added();
}

void end_with_error(SessionState& session, stats::EndCause cause, ErrorCode code, std::string_view message) {
  if (session.dialect != protocol::Dialect::kAce) protocol::append_error(session.out, {}, code, message);
  session.events->end(cause, message);
}

void log_end(PeerLogs& logs, const SessionState& session, stats::EndCause cause, const SessionLoad& load,
             std::chrono::steady_clock::time_point now) {
  if (!spdlog::should_log(logs.sessions.level())) return;
  const bool ace = session.dialect == protocol::Dialect::kAce;
  const std::string_view dialect = ace                                                ? kAceLabel
                                   : session.dialect == protocol::Dialect::kUndecided ? std::string_view("none")
                                                                                      : dialect_name(session);
  const std::int64_t lasted =
      now <= session.began ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(now - session.began).count();
  // An ACE session names its one semaphore; a v1 session holds any number.
  logs.event(logs.sessions, "session ended",
             {{"session", session.id},
              {"peer", session.peer},
              {"dialect", dialect},
              {"label", ace ? kAceLabel : std::string_view(session.label)},
              {"cause", stats::end_cause_name(cause)},
              {"held", load.permits_held},
              {"waiting", load.pending},
              {"duration_ms", lasted},
              {"name", ace ? std::optional<std::string_view>(session.ace_name) : std::nullopt}});
}

void log_slow_grant(PeerLogs& logs, const SlowGrant& grant, const SessionState* session) {
  const bool ace = session != nullptr && session->dialect == protocol::Dialect::kAce;
  logs.event(logs.slow_waits, "slow wait",
             {{"name", grant.name},
              {"waited_ms", grant.waited_ms},
              {"count", grant.count},
              {"fence", grant.fence},
              {"session", grant.session},
              {"peer", session != nullptr ? std::string_view(session->peer) : std::string_view()},
              {"label", ace                  ? kAceLabel
                        : session != nullptr ? std::string_view(session->label)
                                             : std::string_view()}});
}

}  // namespace netsem::server::answers
