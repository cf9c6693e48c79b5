// The Dispatcher's cluster mode (dispatcher.h): a session's commands go to
// the log through the CommandSink, one at a time, and their answers,
// completions and ends come back from the loop replica's results
// (apply_results), mapped by answers.h as in single mode.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <variant>

#include "core/dispatcher.h"
#include "protocol/names.h"

namespace netsem::server {

using protocol::ErrorCode;
using protocol::Verb;
using replication::Answer;
using replication::CloseCause;

namespace {

constexpr std::string_view kAceTag = "ace";

}  // namespace

namespace {

CloseCause close_cause_of(stats::EndCause cause) {
  switch (cause) {
    case stats::EndCause::kQuit:
      return CloseCause::kQuit;
    case stats::EndCause::kTimeout:
      return CloseCause::kIdle;
    case stats::EndCause::kKicked:
      return CloseCause::kKicked;
    case stats::EndCause::kShutdown:
      return CloseCause::kShutdown;
    case stats::EndCause::kOverflow:
    case stats::EndCause::kShed:
    case stats::EndCause::kError:
      return CloseCause::kError;
    case stats::EndCause::kClose:
      break;
  }
  return CloseCause::kClosed;
}

// An ACQUIRE's or WAIT's answer from the log as the table's TakeResult.
TakeResult take_result_of(const Answer& answer) {
  TakeResult result;
  switch (answer.type) {
    case Answer::Type::kGranted:
      result.type = TakeResult::Type::kGranted;
      result.fence = answer.number;
      break;
    case Answer::Type::kQueued:
      result.type = TakeResult::Type::kQueued;
      result.position = answer.number;
      break;
    case Answer::Type::kTimedOut:
      result.type = TakeResult::Type::kTimedOut;
      break;
    default:
      result.type = TakeResult::Type::kError;
      result.error = answer.error;
      result.no_fence = answer.no_fence;
      break;
  }
  return result;
}

}  // namespace

TimePoint Dispatcher::view_time() const {
  return replication::StateMachine::to_time_point(replica_->log_time_ms());
}

// --- submitting ---

void Dispatcher::open_in_log(SessionState& session) {
  session.log.opening = true;
  replication::OpenSession open;
  open.peer = session.peer.substr(0, replication::kMaxPeerBytes);
  open.dialect = session.dialect == protocol::Dialect::kAce ? kAceTag : dialect_name(session);
  open.origin = origin_;
  open.nonce = session.log.nonce;
  // The secret stays here (and goes to the client on RESUMABLE); the log
  // gets its digest only.
  session.log.secret = make_secret();
  open.secret_digest = replication::secret_digest(session.log.secret);
  opening_[session.log.nonce].session = &session;
  sink_->submit(std::move(open));
}

void Dispatcher::submit_request(SessionState& session) {
  replication::SessionRequest command;
  if (!replication::request_from_protocol(session.id, request_, command)) {
    // Not reached: the verbs submitted are request_from_protocol's, a KICK's
    // id parsed already.
    answer_error(session, request_.tag, ErrorCode::kBadArg);
    return;
  }
  command.origin = origin_;
  session.log.pending = true;
  session.log.verb = request_.verb;
  session.log.tag.assign(request_.tag);
  session.log.name = command.name;  // HELLO: its label, or none (request_ keeps an earlier name)
  submit_command(session, std::move(command));
}

void Dispatcher::submit_sync(SessionState& session) {
  replication::SessionRequest command;
  command.verb = replication::RequestVerb::kSync;
  command.tag.assign(request_.tag);
  command.origin = origin_;
  session.log.pending = true;
  session.log.verb = request_.verb;
  session.log.tag.assign(request_.tag);
  session.log.name = request_.name;
  session.log.read_line.assign(line_);
  submit_command(session, std::move(command));
}

void Dispatcher::submit_command(SessionState& session, replication::SessionRequest command) {
  if (!session.log.opened) {
    if (!session.log.opening) open_in_log(session);
    opening_[session.log.nonce].first = std::move(command);
    return;
  }
  submit_now(session, std::move(command));
}

void Dispatcher::answer_synced_read(SessionState& session, std::string_view line) {
  protocol::ParseError parse_error;
  if (protocol::parse_request(line, request_, parse_error) != protocol::ParseStatus::kRequest) return;  // parsed before
  answering_synced_ = true;
  (void)now();
  handle_request(session);
  answering_synced_ = false;
}

void Dispatcher::submit_ace_acquire(SessionState& session) {
  replication::SessionRequest command;
  command.verb = replication::RequestVerb::kAcquire;
  command.tag = kAceTag;
  command.name = session.ace_name;
  command.origin = origin_;
  session.log.pending = true;
  session.log.verb = Verb::kAcquire;
  session.log.tag.assign(kAceTag);
  session.log.name = session.ace_name;
  submit_command(session, std::move(command));
}

void Dispatcher::submit_now(SessionState& session, replication::SessionRequest command) {
  command.session = session.id;
  command.seq = ++session.log.seq;
  session.log.pending_seq = command.seq;
  session.log.touched = now();  // a request is activity in the log
  sink_->submit(std::move(command));
}

void Dispatcher::cluster_end_session(SessionState& session, stats::EndCause cause) {
  by_nonce_.erase(session.log.nonce);
  const CloseCause close = close_cause_of(cause);
  if (session.log.opening) {
    // Its id comes with the open: the close follows it (opened_in_log).
    Opening& opening = opening_[session.log.nonce];
    opening.session = nullptr;
    opening.cause = close;
    opening.first.reset();
    return;
  }
  if (session.log.resuming != 0) {
    // Its RESUME is in flight: if it takes the session, the session stays
    // in the log with no connection here, as a resumable one whose
    // connection ended (resumed_in_log).
    if (const auto found = resuming_.find(session.log.resuming);
        found != resuming_.end() && found->second.session == &session) {
      found->second.session = nullptr;
    }
  }
  if (!session.log.opened) return;  // it never needed the log
  if (const auto found = sessions_.find(session.id); found != sessions_.end() && found->second == &session) {
    sessions_.erase(found);
  }
  if (session.log.closed) return;  // the log ended it, or its close is submitted, or it was resumed elsewhere
  session.log.closed = true;
  // A resumable session outlives its connection (proposed 1.2): the log's
  // session expiry ends it unless a RESUME comes first. QUIT and a kick end
  // it; so does every end when sessions never expire (nothing else would).
  if (session.log.resumable && close != CloseCause::kQuit && close != CloseCause::kKicked &&
      replica_->session_timeout_ms() > 0) {
    spdlog::info("session {} ({}): its connection ended; resumable for {} ms", session.id, session.peer,
                 replica_->session_timeout_ms());
    return;
  }
  if (close == CloseCause::kShutdown && replica_->session_timeout_ms() > 0) {
    // This server stops; the session does not end with it. Its client was
    // told SHUTDOWN and may go on working under its lease (docs/client.md)
    // until the session timeout: the others must not grant its permits
    // before, so the log's expiry ends it (or a RESUME on another server
    // takes it over), not a CloseSession now.
    return;
  }
  sink_->submit(replication::CloseSession{session.id, origin_, close});
}

void Dispatcher::touch_in_log(SessionState& session) {
  if (!cluster_mode() || !session.log.opened || session.log.closed) return;
  const std::int64_t timeout_ms = replica_->session_timeout_ms();
  if (timeout_ms <= 0) return;  // the log expires nobody
  const Clock::time_point at = now();
  if (at - session.log.touched < std::chrono::milliseconds(timeout_ms / 10)) return;
  session.log.touched = at;
  sink_->submit(replication::TouchSession{session.id, origin_});
}

// --- the log's results ---

void Dispatcher::opened_in_log(std::uint64_t nonce, const Answer& answer) {
  const auto found = opening_.find(nonce);
  if (found == opening_.end()) return;  // not this run's (a nonce is never reused)
  Opening opening = std::move(found->second);
  opening_.erase(found);
  if (answer.type != Answer::Type::kOpened) return;  // not reached: an OpenSession always opens
  const SessionId id = answer.number;
  if (opening.session == nullptr) {
    sink_->submit(replication::CloseSession{id, origin_, opening.cause});
    return;
  }
  SessionState& session = *opening.session;
  session.id = id;
  session.log.opening = false;
  session.log.opened = true;
  sessions_.emplace(id, &session);
  logs_.event(logs_.sessions, "session began",
              {{"session", session.id},
               {"peer", session.peer},
               {"dialect", session.dialect == protocol::Dialect::kAce ? kAceTag : dialect_name(session)}});
  if (opening.first) {
    submit_now(session, std::move(*opening.first));
  } else if (session.log.pending && session.log.verb == Verb::kResumable) {
    session.log.pending = false;
    answer_resumable(session, session.log.tag);
    if (session.open && !session.input_held()) session.events->input_resumable();
  }
}

void Dispatcher::write_answer(SessionState& session, const Answer& answer) {
  const Verb verb = session.log.verb;
  const std::string_view tag = session.log.tag;
  const std::string_view name = session.log.name;
  if (answer.type == Answer::Type::kDuplicate || answer.type == Answer::Type::kNotHost) {
    // Nothing changed in the log: the answer is another copy's (duplicate)
    // or another server's to write (not host).
    spdlog::warn("session {} ({}): the log answered its request {}: {}", session.id, session.peer,
                 session.log.pending_seq, answer.type == Answer::Type::kDuplicate ? "duplicate" : "not host");
    return;
  }
  session.log.pending = false;
  session.log.pending_seq = 0;
  if (!session.log.read_line.empty()) {
    // A read or PING whose Sync is applied: answered from the replica now
    // (an error, such as DUPLICATE_TAG, as any request's below).
    const std::string line = std::move(session.log.read_line);
    session.log.read_line.clear();
    if (answer.type == Answer::Type::kOk) {
      answer_synced_read(session, line);
      if (session.open && !session.input_held()) session.events->input_resumable();
      return;
    }
  }
  if (session.dialect == protocol::Dialect::kAce) {
    answers::ace_take(session, take_result_of(answer), logs_);
  } else if (verb == Verb::kAcquire || verb == Verb::kWait) {
    answers::append_take(session, tag, verb, name, take_result_of(answer));
  } else {
    switch (answer.type) {
      case Answer::Type::kValue:
        protocol::append_ok_number(session.out, tag, answer.number);
        break;
      case Answer::Type::kOk:
        if (verb == Verb::kHello) {
          if (!name.empty()) session.label.assign(name);
          answers::append_hello(session, tag, logs_);
        } else {
          protocol::append_ok(session.out, tag);
        }
        break;
      case Answer::Type::kError:
        answers::append_request_error(session.out, tag, verb, name, answer.error,
                                      answer.no_fence ? answers::kNoFenceDetail : std::string_view());
        break;
      default:
        // kNoSession: the log ended the session in an earlier entry, which
        // ended it here too; nothing else answers a request.
        spdlog::warn("session {} ({}): unexpected answer {} from the log", session.id, session.peer,
                     static_cast<int>(answer.type));
        break;
    }
  }
  if (session.open && !session.input_held()) session.events->input_resumable();
}

void Dispatcher::ended_in_log(SessionState& session, CloseCause cause, SessionId kicker) {
  const bool ace_release = session.log.pending && session.log.verb == Verb::kQuit;
  session.log.closed = true;
  session.log.pending = false;
  if (ace_release) {
    answers::ace_released(session, ErrorCode::kNone);
    return;
  }
  switch (cause) {
    case CloseCause::kKicked: {
      std::string reason = "kicked";
      if (kicker != 0) {
        // Who kicked, as a single server says it: its id and peer.
        std::string_view peer;
        if (const auto here = sessions_.find(kicker); here != sessions_.end()) {
          peer = here->second->peer;
        } else if (const auto there = replica_->sessions().find(kicker); there != replica_->sessions().end()) {
          peer = there->second.peer;
        } else if (kicker == session.id) {
          peer = session.peer;
        }
        reason = "kicked by session " + std::to_string(kicker) + " (" + std::string(peer) + ")";
      }
      spdlog::info("session {} ({}) {}", session.id, session.peer, reason);
      end_with_error(session, stats::EndCause::kKicked, ErrorCode::kKicked, reason);
      return;
    }
    case CloseCause::kIdle:
      // As a single server's session timeout: closed, nothing said.
      logs_.log(logs_.timeout, "session {} ({}): no request for {} ms, closed and released", session.id, session.peer,
                replica_->session_timeout_ms());
      session.events->end(stats::EndCause::kTimeout, "session timeout");
      return;
    case CloseCause::kShutdown:
      end_with_error(session, stats::EndCause::kShutdown, ErrorCode::kShutdown, "server is shutting down");
      return;
    case CloseCause::kQuit:
      session.events->end(stats::EndCause::kQuit, "QUIT");
      return;
    case CloseCause::kError:
      session.events->end(stats::EndCause::kError, "ended by the log");
      return;
    case CloseCause::kClosed:
      session.events->end(stats::EndCause::kClose, "closed by the log");
      return;
  }
}

Dispatcher::HostedLoads Dispatcher::hosted_loads() const {
  HostedLoads loads;
  for (const auto& [id, session] : sessions_) loads.emplace(id, view().session_load(id));
  return loads;
}

void Dispatcher::reconcile_restored(const HostedLoads& before) {
  constexpr std::string_view kWhy = "the server skipped part of the log (a snapshot): this session's state is unknown";
  std::vector<SessionState*> lost;
  for (const auto& [id, session] : sessions_) {
    const auto record = replica_->sessions().find(id);
    if (record == replica_->sessions().end() || record->second.host != origin_) {
      lost.push_back(session);  // ended, or resumed elsewhere, in the entries skipped
      continue;
    }
    const bool applied_unseen =
        session->log.pending && session->log.pending_seq != 0 && record->second.last_seq >= session->log.pending_seq;
    if (applied_unseen && !session->log.read_line.empty()) {
      // A read: answered from the snapshot, which is later than its SYNC.
      write_answer(*session, Answer{Answer::Type::kOk, 0, ErrorCode::kNone, false});
      continue;
    }
    const auto was = before.find(id);
    const SessionLoad now = view().session_load(id);
    if (applied_unseen || was == before.end() || was->second.permits_held != now.permits_held ||
        was->second.pending != now.pending) {
      lost.push_back(session);
    }
  }
  for (auto& [nonce, opening] : opening_) {
    // Its OpenSession may be among the entries skipped: no id will come.
    if (opening.session != nullptr) lost.push_back(opening.session);
  }
  for (auto& [id, resuming] : resuming_) {
    // Its ResumeSession may be among them: no answer will come.
    if (resuming.session != nullptr) lost.push_back(resuming.session);
  }
  for (SessionState* session : lost) {
    spdlog::warn("session {} ({}): {}; closed", session->id, session->peer, kWhy);
    session->events->end(stats::EndCause::kError, std::string(kWhy));
  }
}

void Dispatcher::apply_results(const replication::Entry& entry, const replication::EntryResults& results) {
  const std::size_t count = std::min(entry.commands.size(), results.commands.size());
  for (std::size_t i = 0; i < count; ++i) {
    const replication::Command& command = entry.commands[i];
    const replication::CommandResult& result = results.commands[i];
    SessionId kicker = 0;
    if (const auto* open = std::get_if<replication::OpenSession>(&command)) {
      if (open->origin == origin_) opened_in_log(open->nonce, result.answer);
    } else if (const auto* resume = std::get_if<replication::ResumeSession>(&command)) {
      resumed_in_log(*resume, result.answer);
    } else if (const auto* request = std::get_if<replication::SessionRequest>(&command)) {
      if (request->verb == replication::RequestVerb::kKick && result.answer.type == Answer::Type::kOk) {
        kicker = request->session;
      }
      if (request->origin == origin_) {
        const auto found = sessions_.find(request->session);
        if (found != sessions_.end() && found->second->log.pending && found->second->log.pending_seq == request->seq) {
          write_answer(*found->second, result.answer);
        }
      }
    }
    // The completions and ends, in the order they happened, to the
    // sessions hosted here.
    const auto deliver_to_host = [this](const Completion& completion) {
      const auto found = sessions_.find(completion.session);
      if (found != sessions_.end()) answers::deliver(*found->second, completion, now());
    };
    std::size_t next = 0;
    for (const replication::Ended& ended : result.ended) {
      for (; next < ended.after_completions && next < result.completions.size(); ++next) {
        deliver_to_host(result.completions[next]);
      }
      const auto found = sessions_.find(ended.session);
      if (found != sessions_.end()) ended_in_log(*found->second, ended.cause, kicker);
    }
    for (; next < result.completions.size(); ++next) deliver_to_host(result.completions[next]);
  }
}

}  // namespace netsem::server
