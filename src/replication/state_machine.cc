// StateMachine's apply (state_machine.h); snapshot and restore are in
// snapshot.cc.
#include "replication/state_machine.h"

#include <fmt/format.h>

#include <algorithm>

namespace netsem::replication {

using server::ErrorCode;
using server::TakeMode;
using server::TakeRequest;
using server::TakeResult;

// The table's journal under replication: the log is what makes created
// semaphores and fences durable (a replica rebuilds them from a snapshot
// and the entries after it), so nothing is recorded here, and every fence
// may be handed out: every replica hands out the same ones at the same
// index.
class StateMachine::LogJournal final : public server::Journal {
 public:
  void record_set(std::string_view, const server::CreatedState&) override {}
  void record_delete(std::string_view) override {}
  std::uint64_t reserve_fences(std::uint64_t needed) override { return needed; }
};

StateMachine::StateMachine(server::TableLimits limits)
    : limits_(limits), journal_(std::make_unique<LogJournal>()), table_(make_table()) {}

StateMachine::~StateMachine() = default;

std::unique_ptr<server::SemaphoreTable> StateMachine::make_table() const {
  return std::make_unique<server::SemaphoreTable>(*journal_, limits_);
}

Result<std::string> StateMachine::apply(std::uint64_t index, std::string_view entry) {
  return apply(index, entry, Seen());
}

Result<std::string> StateMachine::apply(std::uint64_t index, std::string_view entry, const Seen& seen) {
  auto decoded = decode_entry(entry);
  if (!decoded)
    return Status(decoded.status().code(), fmt::format("log index {}: {}", index, decoded.status().message()));
  auto results = apply_entry(index, *decoded);
  if (!results) return results.status();
  if (seen) seen(*decoded, *results);
  return encode_results(*results);
}

Result<EntryResults> StateMachine::apply_entry(std::uint64_t index, const Entry& entry) {
  // Equal indexes are allowed: the consensus layer may carry several
  // entries in one log entry, all applied under its index.
  if (index < last_index_) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("log index {} is below the last one applied, {}", index, last_index_));
  }
  // The log time only increases: an entry from a leader whose clock is
  // behind is applied at the last time.
  log_time_ms_ = std::max(log_time_ms_, entry.time_ms);
  table_->set_time(to_time_point(log_time_ms_));
  EntryResults results;
  results.index = index;
  results.time_ms = log_time_ms_;
  results.commands.resize(entry.commands.size());
  for (std::size_t i = 0; i < entry.commands.size(); ++i) apply_command(entry.commands[i], results.commands[i]);
  last_index_ = index;
  return results;
}

void StateMachine::apply_command(const Command& command, CommandResult& result) {
  Answer& answer = result.answer;
  // The session, if open and hosted by `origin`; otherwise the answer says
  // why not (kNoSession, kNotHost with the host) and nothing changes.
  const auto hosted = [this, &answer](SessionId id, ServerId origin) -> SessionRecord* {
    const auto found = sessions_.find(id);
    if (found == sessions_.end()) {
      answer.type = Answer::Type::kNoSession;
      return nullptr;
    }
    if (found->second.host != origin) {
      answer = {Answer::Type::kNotHost, found->second.host, ErrorCode::kNone, false};
      return nullptr;
    }
    return &found->second;
  };
  if (const auto* open = std::get_if<OpenSession>(&command)) {
    const SessionId id = ++last_session_;
    table_->open_session(id);
    SessionRecord& record = sessions_[id];
    record.id = id;
    record.label = open->label;
    record.peer = open->peer;
    record.dialect = open->dialect;
    record.opened_ms = log_time_ms_;
    record.last_activity_ms = log_time_ms_;
    record.host = open->origin;
    record.last_seq = 0;
    record.secret_digest = open->secret_digest;
    activity_.emplace(log_time_ms_, id);
    answer = {Answer::Type::kOpened, id, ErrorCode::kNone, false};
  } else if (const auto* request = std::get_if<SessionRequest>(&command)) {
    apply_request(*request, result);
  } else if (const auto* closing = std::get_if<CloseSession>(&command)) {
    if (hosted(closing->session, closing->origin) != nullptr) close(closing->session, closing->cause, result);
  } else if (const auto* touched = std::get_if<TouchSession>(&command)) {
    if (SessionRecord* session = hosted(touched->session, touched->origin)) touch(*session);
  } else if (std::holds_alternative<TouchAll>(command)) {
    activity_.clear();
    for (auto& [id, session] : sessions_) {
      session.last_activity_ms = log_time_ms_;
      activity_.emplace_hint(activity_.end(), log_time_ms_, id);
    }
  } else if (std::holds_alternative<AdvanceTime>(command)) {
    // Requests whose deadline passed leave first, then silent sessions end
    // (the permits they give back may grant the requests still queued).
    table_->expire(to_time_point(log_time_ms_), result.completions);
    expire_sessions(result);
  } else if (const auto* reconfigure = std::get_if<Reconfigure>(&command)) {
    session_timeout_ms_ = reconfigure->session_timeout_ms;
    (void)table_->configure_defined(reconfigure->limits, result.completions);
    answer.type = Answer::Type::kOk;
  } else if (const auto* resume = std::get_if<ResumeSession>(&command)) {
    apply_resume(*resume, result);
  } else if (const auto* member = std::get_if<SetMember>(&command)) {
    members_[member->id] = member->client_address;
    answer.type = Answer::Type::kOk;
  } else if (const auto* removed = std::get_if<RemoveMember>(&command)) {
    members_.erase(removed->id);
    answer.type = Answer::Type::kOk;
  } else if (const auto* raise = std::get_if<RaiseFences>(&command)) {
    // Every replica holds the same last fence at this index, so all raise
    // it alike (and the snapshot holds it).
    const std::uint64_t last = table_->stats().last_fence;
    if (last > kMaxRaisedFence || raise->by > kMaxRaisedFence - last) {
      answer = {Answer::Type::kError, 0, ErrorCode::kLimit, false};
    } else {
      answer = {Answer::Type::kValue, table_->raise_fences(raise->by), ErrorCode::kNone, false};
    }
  }
}

void StateMachine::apply_resume(const ResumeSession& resume, CommandResult& result) {
  Answer& answer = result.answer;
  const auto found = sessions_.find(resume.session);
  if (found == sessions_.end()) {
    answer.type = Answer::Type::kNoSession;
    return;
  }
  SessionRecord& session = found->second;
  if (!same_secret_digest(session.secret_digest, resume.secret_digest)) {
    answer = {Answer::Type::kError, 0, ErrorCode::kDenied, false};
    return;
  }
  if (session.host != resume.from_host) {
    // Resumed elsewhere since the proposer looked: the newer connection keeps it.
    answer = {Answer::Type::kNotHost, session.host, ErrorCode::kNone, false};
    return;
  }
  session.host = resume.origin;
  touch(session);
  answer = {Answer::Type::kOk, session.last_seq, ErrorCode::kNone, false};
}

void StateMachine::apply_request(const SessionRequest& request, CommandResult& result) {
  Answer& answer = result.answer;
  const auto found = sessions_.find(request.session);
  if (found == sessions_.end()) {
    answer.type = Answer::Type::kNoSession;
    return;
  }
  SessionRecord& session = found->second;
  // Another server drives the session, or its host proposes again a request
  // already applied (its outcome was lost in a change of leader): nothing
  // changes, not even the session's activity.
  if (session.host != request.origin) {
    answer = {Answer::Type::kNotHost, session.host, ErrorCode::kNone, false};
    return;
  }
  if (request.seq <= session.last_seq) {
    answer = {Answer::Type::kDuplicate, session.last_seq, ErrorCode::kNone, false};
    return;
  }
  session.last_seq = request.seq;
  touch(session);
  const auto error = [&answer](ErrorCode code) {
    answer.type = code == ErrorCode::kNone ? Answer::Type::kOk : Answer::Type::kError;
    answer.error = code;
  };
  const SessionId id = request.session;
  const bool takes = request.verb == RequestVerb::kAcquire || request.verb == RequestVerb::kWait;
  // As the dispatcher: take() checks a duplicate tag itself, every other
  // verb is refused here while its tag names a queued request.
  if (!takes && table_->is_pending(id, request.tag)) return error(ErrorCode::kDuplicateTag);
  std::int64_t value = 0;
  const auto valued = [&](ErrorCode code) {
    error(code);
    if (code == ErrorCode::kNone) answer = {Answer::Type::kValue, static_cast<std::uint64_t>(value), code, false};
  };
  switch (request.verb) {
    case RequestVerb::kAcquire:
    case RequestVerb::kWait: {
      TakeRequest take;
      take.session = id;
      take.tag = request.tag;
      take.name = request.name;
      take.mode = request.verb == RequestVerb::kAcquire ? TakeMode::kAcquire : TakeMode::kWait;
      take.count = request.count;
      take.timeout_ms = request.timeout_ms;
      take.now = to_time_point(log_time_ms_);
      const TakeResult taken = table_->take(take, result.completions);
      switch (taken.type) {
        case TakeResult::Type::kGranted:
          answer = {Answer::Type::kGranted, taken.fence, ErrorCode::kNone, false};
          break;
        case TakeResult::Type::kQueued:
          answer = {Answer::Type::kQueued, taken.position, ErrorCode::kNone, false};
          break;
        case TakeResult::Type::kTimedOut:
          answer.type = Answer::Type::kTimedOut;
          break;
        case TakeResult::Type::kError:
          answer = {Answer::Type::kError, 0, taken.error, taken.no_fence};
          break;
      }
      return;
    }
    case RequestVerb::kRelease:
      return valued(table_->release(id, request.name, request.count, value, result.completions));
    case RequestVerb::kPost:
      return valued(table_->post(request.name, request.count, value, result.completions));
    case RequestVerb::kCancel:
      return error(table_->cancel(id, request.pending_tag, result.completions));
    case RequestVerb::kCreate:
      return error(table_->create(request.name, request.value, request.max, request.exclusive));
    case RequestVerb::kDelete:
      return error(table_->remove(request.name));
    case RequestVerb::kKick:
      if (!sessions_.contains(request.target)) return error(ErrorCode::kNotFound);
      error(ErrorCode::kNone);
      close(request.target, CloseCause::kKicked, result);
      return;
    case RequestVerb::kHello:
      if (!request.name.empty()) session.label = request.name;
      return error(ErrorCode::kNone);
    case RequestVerb::kSync:
      return error(ErrorCode::kNone);  // the session's activity, above
  }
}

void StateMachine::touch(SessionRecord& session) {
  if (session.last_activity_ms == log_time_ms_) return;
  activity_.erase({session.last_activity_ms, session.id});
  session.last_activity_ms = log_time_ms_;
  activity_.emplace(log_time_ms_, session.id);
}

void StateMachine::close(SessionId id, CloseCause cause, CommandResult& result) {
  const auto found = sessions_.find(id);
  activity_.erase({found->second.last_activity_ms, id});
  sessions_.erase(found);
  result.ended.push_back({id, cause, static_cast<std::uint32_t>(result.completions.size())});
  table_->close_session(id, result.completions);
}

void StateMachine::expire_sessions(CommandResult& result) {
  if (session_timeout_ms_ <= 0) return;
  // The longest silent first (ties by id).
  while (!activity_.empty() && activity_.begin()->first + session_timeout_ms_ <= log_time_ms_) {
    close(activity_.begin()->second, CloseCause::kIdle, result);
  }
}

std::optional<std::int64_t> StateMachine::next_expiry_ms() const {
  std::optional<std::int64_t> next;
  if (const auto deadline = table_->next_deadline()) next = to_log_ms(*deadline);
  if (session_timeout_ms_ > 0 && !activity_.empty()) {
    const std::int64_t silent = activity_.begin()->first + session_timeout_ms_;
    if (!next || silent < *next) next = silent;
  }
  return next;
}

}  // namespace netsem::replication
