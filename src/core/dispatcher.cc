// The dispatcher's verbs, each a thin step from the parsed request to the
// table and back to an answer line; the ACE dialect's tokens; the delivery
// of completions; LIST streaming; and STATS.
#include "core/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "common/log.h"
#include "common/text.h"
#include "core/answers.h"
#include "protocol/names.h"
#include "stats/render.h"

namespace netsem::server {

using protocol::ErrorCode;
using protocol::Verb;

namespace {

// ACE sessions have one request at a time; its tag is internal.
constexpr std::string_view kAceTag = "ace";

protocol::SemaphoreView view_of(const SemaphoreInfo& info) {
  return {info.name, info.value, info.max, info.holders, info.waiters, kind_name(info.kind)};
}

}  // namespace

Dispatcher::Dispatcher(SemaphoreTable& table, const JournalProgress& journal, const ServerConfig& config,
                       ServerCounters& counters, PeerLogs& logs, ClockFunction clock, const void* clock_context)
    : table_(&table),
      journal_(journal),
      config_(config),
      counters_(counters),
      logs_(logs),
      clock_(clock),
      clock_context_(clock_context) {
  started_ = clock_(clock_context_);
  request_sequence_ = journal_.sequence();
  table_->set_slow_wait(std::chrono::milliseconds(config_.slow_wait_ms));
}

namespace {

// A session's CLUSTER ADD, REMOVE or FENCES, whose sink answers inside the
// call or later: `submit(reply)` hands the sink its callback. An answer
// inside the call is appended at once (`answer`); a later one goes to
// `later` (membership_changed, fences_raised), which finds the session again
// by its nonce (cluster_answered). Meanwhile the session's later requests
// wait (cluster_pending).
template <class Outcome, class Submit, class Later, class Answer>
void await_cluster(SessionState& session, std::string_view tag, Submit submit, Later later, Answer answer) {
  session.cluster_pending = true;
  session.cluster_tag.assign(tag);
  auto inside = std::make_shared<bool>(true);
  auto at_once = std::make_shared<std::optional<Outcome>>();
  submit([later = std::move(later), inside, at_once](Outcome outcome) {
    if (*inside) {
      *at_once = std::move(outcome);
      return;
    }
    later(outcome);
  });
  *inside = false;
  if (*at_once) {
    session.cluster_pending = false;
    session.cluster_tag.clear();
    answer(**at_once);
  }
}

// Cluster mode has no journal: nothing is ever held for one.
class NoJournal final : public JournalProgress {
 public:
  std::uint64_t answerable_sequence() const override { return 0; }
  bool ok() const override { return true; }
};
const NoJournal kNoJournal;

}  // namespace

Dispatcher::Dispatcher(const replication::StateMachine& replica, CommandSink& sink, replication::ServerId origin,
                       const ServerConfig& config, ServerCounters& counters, PeerLogs& logs, ClockFunction clock,
                       const void* clock_context)
    : table_(nullptr),
      journal_(kNoJournal),
      config_(config),
      counters_(counters),
      logs_(logs),
      clock_(clock),
      clock_context_(clock_context),
      replica_(&replica),
      sink_(&sink),
      origin_(origin) {
  started_ = clock_(clock_context_);
  // Nonces begin at a random point, so that an OpenSession of this server's
  // previous run, applied again while this run catches up with the log,
  // never matches a session of this run (which would get the old session's
  // id and answers).
  std::random_device random;
  next_nonce_ = (std::uint64_t{random()} << 32 | random()) & ((std::uint64_t{1} << 62) - 1);
}

// --- sessions ---

void Dispatcher::begin_session(SessionState& session) {
  session.open = true;
  session.last_activity = session.began = now();
  if (cluster_mode()) {
    // Opened in the log by its first command (open_in_log), once its
    // dialect is known; sessions_ has it from then on.
    session.log.nonce = ++next_nonce_;
    by_nonce_.emplace(session.log.nonce, &session);
  } else {
    table_->open_session(session.id);
    sessions_.emplace(session.id, &session);
    sessions_by_id_.emplace(session.id, &session);
  }
  // At accept: the dialect and a label come later, and the end line has
  // them. (The network layer makes one SessionState per connection.) In
  // cluster mode, once the log gave the session its id (opened_in_log).
  if (cluster_mode()) return;
  if (session.tls) {
    logs_.event(logs_.sessions, "session began",
                {{"session", session.id},
                 {"peer", session.peer},
                 {"dialect", dialect_name(session)},
                 {"tls_subject", session.tls_subject.empty() ? std::string_view("-") : session.tls_subject}});
  } else {
    logs_.event(logs_.sessions, "session began", {{"session", session.id}, {"peer", session.peer}});
  }
}

void Dispatcher::end_session(SessionState& session, stats::EndCause cause) {
  // A LIST in progress is cut short.
  session.list.reset();
  if (!session.open) return;
  session.open = false;
  if (!session.moved) {  // a move is no end: the session goes on elsewhere
    counters_.count_end(cause);
    // In a cluster a connection has a session once the log opened one (its
    // "session began" line): one that never needed it (a peer server's
    // link, a connection that only read) has no session to end.
    if (!cluster_mode() || session.log.opened) log_end(session, cause);
  }
  if (cluster_mode()) {
    cluster_end_session(session, cause);
    return;
  }
  if (const auto found = sessions_.find(session.id); found == sessions_.end() || found->second != &session) {
    return;  // resumed on another connection: the session goes on there
  }
  sessions_.erase(session.id);
  sessions_by_id_.erase(session.id);
  if (shutting_down_) return;
  (void)now();  // the table's time, for the holds this ends and the grants it makes
  if (session.log.resumable && cause != stats::EndCause::kQuit && cause != stats::EndCause::kKicked &&
      config_.session_timeout_ms > 0) {
    // Proposed 1.2: the session outlives its connection until a RESUME, or
    // the session timeout after its last activity.
    detached_[session.id] = Detached{session.log.secret, session.label, session.last_activity};
    spdlog::info("session {} ({}): its connection ended; resumable for {} ms", session.id, session.peer,
                 config_.session_timeout_ms);
    return;
  }
  table_->close_session(session.id, completions_);
  deliver_completions();
}

// --- protocol v1 ---

bool Dispatcher::handle_line(SessionState& session, std::string_view line) {
  protocol::ParseError parse_error;
  const auto parsed = protocol::parse_request(line, request_, parse_error);
  if (parsed == protocol::ParseStatus::kEmpty) return false;
  ++counters_.requests;
  line_ = line;
  if (parsed == protocol::ParseStatus::kError) {
    protocol::append_error(session.out, parse_error.tag, parse_error.code, parse_error.message);
    return true;
  }
  const std::size_t answer = session.out.size();
  request_sequence_ = journal_.sequence();
  (void)now();  // the table's time, for the holds a request ends and the grants it makes
  handle_request(session);
  session.requested = true;
  if (cluster_mode() && !session.log.pending) touch_in_log(session);
  // Its answer is sent once the records it made are written.
  if (const std::uint64_t dependency = answer_dependency()) session.holds.push_back({answer, dependency});
  return true;
}

void Dispatcher::handle_request(SessionState& session) {
  const std::string_view tag = request_.tag;
  // Rights are checked first: a peer without them learns nothing more.
  if (config_.auth.required() && !permitted(session, tag)) return;
  // take() refuses a duplicate tag itself, on the grant path's one session
  // lookup; every other verb is checked here.
  if (cluster_mode()) {
    // The log's verbs (but KICK, whose right and id are checked first, in
    // kick()); the state machine refuses a duplicate tag itself.
    switch (request_.verb) {
      case Verb::kAcquire:
      case Verb::kWait:
      case Verb::kRelease:
      case Verb::kPost:
      case Verb::kCancel:
      case Verb::kCreate:
      case Verb::kDelete:
      case Verb::kHello:
        submit_request(session);
        return;
      case Verb::kGet:
      case Verb::kList:
      case Verb::kStats:
      case Verb::kPing:
      case Verb::kHolders:
      case Verb::kWaiters:
      case Verb::kSessions:
      case Verb::kMine:
        // Answered from the replica once a Sync of the session is applied
        // (entry.h, RequestVerb::kSync): never a stale read, never a PONG
        // that the majority did not see. (A PING of a session the log does
        // not know yet renews nothing: answered at once.)
        if (request_.verb == Verb::kPing && !session.log.opened && !session.log.opening) break;
        if (!answering_synced_) {
          submit_sync(session);
          return;
        }
        break;
      default:
        break;
    }
  }
  const bool takes = request_.verb == Verb::kAcquire || request_.verb == Verb::kWait;
  if (!takes && view().pending_count(session.id) != 0 && view().is_pending(session.id, tag)) {
    answer_error(session, tag, ErrorCode::kDuplicateTag);
    return;
  }
  std::int64_t value = 0;
  switch (request_.verb) {
    case Verb::kAcquire:
      handle_take(session, TakeMode::kAcquire);
      return;
    case Verb::kWait:
      handle_take(session, TakeMode::kWait);
      return;
    case Verb::kRelease: {
      const auto error = table_->release(session.id, request_.name, request_.count, value, completions_);
      if (error != ErrorCode::kNone) return answer_error(session, tag, error);
      protocol::append_ok_number(session.out, tag, static_cast<std::uint64_t>(value));
      deliver_completions();
      return;
    }
    case Verb::kPost: {
      const auto error = table_->post(request_.name, request_.count, value, completions_);
      if (error != ErrorCode::kNone) return answer_error(session, tag, error);
      protocol::append_ok_number(session.out, tag, static_cast<std::uint64_t>(value));
      deliver_completions();
      return;
    }
    case Verb::kCancel: {
      const auto error = table_->cancel(session.id, request_.pending_tag, completions_);
      if (error != ErrorCode::kNone) return answer_error(session, tag, error);
      protocol::append_ok(session.out, tag);
      deliver_completions();
      return;
    }
    case Verb::kCreate: {
      const auto error = table_->create(request_.name, request_.value, request_.max, request_.exclusive);
      if (error != ErrorCode::kNone) return answer_error(session, tag, error);
      protocol::append_ok(session.out, tag);
      return;
    }
    case Verb::kDelete: {
      const auto error = table_->remove(request_.name);
      if (error != ErrorCode::kNone) return answer_error(session, tag, error);
      protocol::append_ok(session.out, tag);
      return;
    }
    case Verb::kGet:
      protocol::append_get(session.out, tag, view_of(view().get(request_.name)));
      return;
    case Verb::kList:
      start_list(session);
      return;
    case Verb::kStats:
      append_stats(session, tag);
      return;
    case Verb::kPing:
      protocol::append_pong(session.out, tag, request_.text, request_.has_text);
      return;
    case Verb::kLease:
      // Proposed 1.2: the session timeout, which every client needs for its
      // lease whatever its rights (STATS needs an unlimited read right). On
      // the log, the replicated one (a reload changes it there).
      protocol::append_ok_number(session.out, tag,
                                 static_cast<std::uint64_t>(std::max<std::int64_t>(
                                     cluster_mode() ? replica_->session_timeout_ms() : config_.session_timeout_ms, 0)));
      return;
    case Verb::kHello: {
      if (request_.has_name) session.label.assign(request_.name);
      answers::append_hello(session, tag, logs_);
      return;
    }
    case Verb::kQuit:
      protocol::append_ok(session.out, tag);
      session.quit = true;
      session.events->end(stats::EndCause::kQuit, "QUIT");
      return;
    case Verb::kOption:
      // The only option (the codec refuses others): later requests only.
      session.queued_lines = request_.option_on;
      protocol::append_ok(session.out, tag);
      return;
    case Verb::kHolders:
      start_rows(session, tag, SessionState::ListStream::Kind::kHolders);
      return;
    case Verb::kWaiters:
      start_rows(session, tag, SessionState::ListStream::Kind::kWaiters);
      return;
    case Verb::kSessions:
      start_rows(session, tag, SessionState::ListStream::Kind::kSessions);
      return;
    case Verb::kKick:
      kick(session, tag);
      return;
    case Verb::kAuth:
      handle_auth(session, tag);
      return;
    case Verb::kResumable:
      resumable(session, tag);
      return;
    case Verb::kResume:
      resume(session, tag);
      return;
    case Verb::kMine:
      mine(session, tag);
      return;
    case Verb::kLeader:
      leader(session, tag);
      return;
    case Verb::kCluster:
      handle_cluster(session, tag);
      return;
  }
}

// --- CLUSTER (proposed 1.2) ---

void Dispatcher::handle_cluster(SessionState& session, std::string_view tag) {
  // With tokens, permitted() checked the admin right already.
  if (!config_.auth.required() && !config_.admin_networks.allows(session.address)) {
    return answer_error(session, tag, ErrorCode::kDenied, "CLUSTER needs the admin right (admin_networks)");
  }
  if (!cluster_mode()) {
    return answer_error(session, tag, ErrorCode::kBadArg, "this server is not in a cluster (no [cluster] section)");
  }
  if (request_.cluster_action == protocol::ClusterAction::kStatus) {
    protocol::append_ok_text(session.out, tag, sink_->cluster_status_json());
    return;
  }
  if (request_.cluster_action == protocol::ClusterAction::kFences) return raise_fences(session, tag);
  MembershipChange change;
  change.add = request_.cluster_action == protocol::ClusterAction::kAdd;
  change.id = request_.member_id;
  change.raft_address.assign(request_.raft_address);
  change.client_address.assign(request_.client_address);
  logs_.event(logs_.sessions, change.add ? "cluster add asked" : "cluster remove asked",
              {{"session", session.id}, {"peer", session.peer}, {"server", change.id}});
  const std::uint64_t key = session.log.nonce;
  await_cluster<Status>(
      session, tag, [&](auto reply) { sink_->change_membership(std::move(change), std::move(reply)); },
      [this, key](const Status& outcome) { membership_changed(key, outcome); },
      [&](const Status& outcome) { answer_membership(session, tag, outcome); });
}

SessionState* Dispatcher::cluster_answered(std::uint64_t key, std::string& tag) {
  const auto found = by_nonce_.find(key);
  if (found == by_nonce_.end() || !found->second->cluster_pending) return nullptr;
  SessionState& session = *found->second;
  session.cluster_pending = false;
  tag = std::move(session.cluster_tag);
  session.cluster_tag.clear();
  begin_turn();
  return &session;
}

void Dispatcher::membership_changed(std::uint64_t key, const Status& outcome) {
  std::string tag;
  SessionState* session = cluster_answered(key, tag);
  if (session == nullptr) return;
  answer_membership(*session, tag, outcome);
  session->events->input_resumable();
}

void Dispatcher::raise_fences(SessionState& session, std::string_view tag) {
  const std::uint64_t by = request_.fences_by;
  logs_.event(logs_.sessions, "cluster fences asked", {{"session", session.id}, {"peer", session.peer}, {"by", by}});
  const std::uint64_t key = session.log.nonce;
  await_cluster<Result<std::uint64_t>>(
      session, tag, [&](auto reply) { sink_->raise_fences(by, std::move(reply)); },
      [this, key](const Result<std::uint64_t>& outcome) { fences_raised(key, outcome); },
      [&](const Result<std::uint64_t>& outcome) { answer_fences(session, tag, outcome); });
}

void Dispatcher::fences_raised(std::uint64_t key, const Result<std::uint64_t>& outcome) {
  std::string tag;
  SessionState* session = cluster_answered(key, tag);
  if (session == nullptr) return;
  answer_fences(*session, tag, outcome);
  session->events->input_resumable();
}

void Dispatcher::answer_fences(SessionState& session, std::string_view tag, const Result<std::uint64_t>& outcome) {
  if (!outcome) return answer_membership(session, tag, outcome.status());
  logs_.event(logs_.sessions, "cluster fences raised",
              {{"session", session.id}, {"peer", session.peer}, {"last_fence", *outcome}});
  protocol::append_ok_number(session.out, tag, *outcome);
}

void Dispatcher::answer_membership(SessionState& session, std::string_view tag, const Status& outcome) {
  if (outcome) {
    protocol::append_ok(session.out, tag);
    return;
  }
  if (outcome.code() == StatusCode::kTimeout || outcome.code() == StatusCode::kCancelled) {
    // The leader gave up on the change (proposed 1.2), as 1.0's TIMEOUT
    // says: ADD of a server that did not catch up (kTimeout), or a change
    // whose leader lost its leadership before it committed (kCancelled:
    // its outcome is unknown, so not BUSY, which says nothing happened).
    // The server's log says which; CLUSTER STATUS shows the outcome.
    logs_.event(logs_.sessions, "cluster change timed out",
                {{"session", session.id}, {"peer", session.peer}, {"why", outcome.message()}});
    protocol::append_timeout(session.out, tag);
    return;
  }
  ErrorCode code = ErrorCode::kBusy;  // not the leader, no leader, a change in progress: retry
  switch (outcome.code()) {
    case StatusCode::kInvalidArgument:
      code = ErrorCode::kBadArg;
      break;
    case StatusCode::kNotFound:
      code = ErrorCode::kNotFound;
      break;
    case StatusCode::kAlreadyExists:
      code = ErrorCode::kExists;
      break;
    case StatusCode::kShutdown:
      code = ErrorCode::kShutdown;
      break;
    case StatusCode::kLimit:
      code = ErrorCode::kLimit;
      break;
    default:
      break;
  }
  std::string detail(outcome.message());
  std::replace_if(
      detail.begin(), detail.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  protocol::append_error(session.out, tag, code, detail);
}

// --- protocol 1.1: who holds, who waits, who is there, KICK ---

std::string_view Dispatcher::label_of(SessionId id) const {
  if (cluster_mode()) {
    // Sessions of every server: the log's labels.
    const auto& all = replica_->sessions();
    const auto it = all.find(id);
    if (it == all.end()) return {};
    return it->second.dialect == answers::kAceLabel ? answers::kAceLabel : std::string_view(it->second.label);
  }
  const auto found = sessions_.find(id);
  if (found == sessions_.end()) return {};  // not reached: the table knows open sessions only
  const SessionState& other = *found->second;
  return other.dialect == protocol::Dialect::kAce ? answers::kAceLabel : std::string_view(other.label);
}

void Dispatcher::start_rows(SessionState& session, std::string_view tag, SessionState::ListStream::Kind kind) {
  using Kind = SessionState::ListStream::Kind;
  if (kind != Kind::kSessions && view().get(request_.name).kind == SemaphoreKind::kAbsent) {
    return answer_error(session, tag, ErrorCode::kNotFound);
  }
  session.list.emplace();
  session.list->kind = kind;
  session.list->tag.assign(tag);
  if (kind != Kind::kSessions) session.list->prefix.assign(request_.name);
  produce_list(session);  // a short one is done here, and the batch goes on
  if (session.list) session.events->timer_changed();
}

bool Dispatcher::produce_rows(SessionState& session, std::size_t stop_at) {
  using Kind = SessionState::ListStream::Kind;
  SessionState::ListStream& list = *session.list;
  std::string& out = session.out;
  // The table's time: this turn's, or the log time of the replica's.
  const Clock::time_point now = cluster_mode() ? view_time() : this->now();
  bool more = false;
  // Each row shows its holder, waiter or session as it is when the row is
  // made; the cursor is the last row's order (or id), so rows come in
  // order, each at most once, as holders and waiters come and go between
  // chunks. A semaphore that is removed meanwhile ends the listing.
  const auto room = [&] {
    if (out.size() < stop_at) return true;
    more = true;
    return false;
  };
  switch (list.kind) {
    case Kind::kHolders:
      view().holders_after(list.prefix, now, list.after, [&](const HolderInfo& h) {
        if (!room()) return false;
        protocol::append_holder_item(out, list.tag, {h.session, h.count, h.fence, h.held_ms, label_of(h.session)});
        ++list.count;
        list.after = h.order;
        return true;
      });
      break;
    case Kind::kWaiters:
      view().waiters_after(list.prefix, now, list.after, [&](const WaiterInfo& w) {
        if (!room()) return false;
        protocol::append_waiter_item(out, list.tag,
                                     {w.session, w.count, w.waited_ms, w.timeout_ms_left, label_of(w.session)});
        ++list.count;
        list.after = w.order;
        return true;
      });
      break;
    case Kind::kSessions: {
      // By id, from the first id above the cursor: the cursor is an id, not
      // an iterator, so a session that ends between chunks (the last one
      // listed included) leaves nothing dangling.
      const auto ms = [now](Clock::time_point since) {
        return now <= since ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count();
      };
      if (cluster_mode()) {
        // The log's sessions, every server's, with their log times.
        const auto& all = replica_->sessions();
        for (auto it = all.upper_bound(list.after); it != all.end(); ++it) {
          const replication::SessionRecord& other = it->second;
          if (!room()) break;
          const SessionLoad load = view().session_load(other.id);
          using replication::StateMachine;
          protocol::append_session_item(
              out, list.tag,
              {other.id, other.peer, other.dialect, load.permits_held, static_cast<std::int64_t>(load.pending),
               ms(StateMachine::to_time_point(other.opened_ms)),
               ms(StateMachine::to_time_point(other.last_activity_ms)), label_of(other.id)});
          ++list.count;
          list.after = other.id;
        }
        break;
      }
      for (auto it = sessions_by_id_.upper_bound(list.after); it != sessions_by_id_.end(); ++it) {
        const SessionState* other = it->second;
        if (!room()) break;
        const SessionLoad load = view().session_load(other->id);
        const bool ace = other->dialect == protocol::Dialect::kAce;
        protocol::append_session_item(
            out, list.tag,
            {other->id, other->peer, dialect_name(*other), load.permits_held, static_cast<std::int64_t>(load.pending),
             ms(other->began), ms(other->last_activity), ace ? answers::kAceLabel : std::string_view(other->label)});
        ++list.count;
        list.after = other->id;
      }
      break;
    }
    case Kind::kList:
      break;
  }
  return more;
}

void Dispatcher::kick(SessionState& session, std::string_view tag) {
  // The right comes before anything about the id (the contract), so a peer
  // without it learns nothing of which ids exist.
  // With tokens, permitted() checked the admin right already.
  if (!config_.auth.required() && !config_.admin_networks.allows(session.address)) {
    return answer_error(session, tag, ErrorCode::kDenied, "KICK needs the admin right (admin_networks)");
  }
  std::uint64_t id = 0;
  if (!protocol::parse_session_id(request_.session_id, id)) {
    return answer_error(session, tag, ErrorCode::kBadArg, "a session id is a decimal number 1..18446744073709551615");
  }
  if (cluster_mode()) {
    // The target may be hosted by any server: the log knows (NOT_FOUND
    // from it), and its host tells it why.
    submit_request(session);
    return;
  }
  const auto found = sessions_.find(id);
  if (found == sessions_.end()) return answer_error(session, tag, ErrorCode::kNotFound);
  SessionState& target = *found->second;
  protocol::append_ok(session.out, tag);
  spdlog::info("session {} ({}) kicked session {} ({})", session.id, session.peer, target.id, target.peer);
  // As if its connection had closed: its permits go back and the waiters
  // they let in are granted now (their answers follow this OK); its queued
  // requests are dropped unanswered. A v1 peer reads why first.
  end_with_error(target, stats::EndCause::kKicked, ErrorCode::kKicked,
                 "kicked by session " + std::to_string(session.id) + " (" + session.peer + ")");
}

bool Dispatcher::kick_session(SessionId id, std::string_view reason) {
  const auto found = sessions_.find(id);
  if (found == sessions_.end()) return false;
  SessionState& target = *found->second;
  spdlog::info("session {} ({}) {}", target.id, target.peer, reason);
  end_with_error(target, stats::EndCause::kKicked, ErrorCode::kKicked, reason);
  return true;
}

std::string Dispatcher::hosted_elsewhere(SessionId id) const {
  if (!cluster_mode() || sessions_.contains(id)) return {};
  const auto found = replica_->sessions().find(id);
  if (found == replica_->sessions().end()) return {};
  const std::uint64_t host = found->second.host;
  const auto member = replica_->members().find(host);
  std::string where = "server " + std::to_string(host);
  if (member != replica_->members().end()) where += " at " + member->second;
  return where;
}

// --- authentication ---

namespace {

constexpr std::uint8_t kMaxAuthFailures = 5;
// The answer to an AUTH that finds the verifier's queue full.
constexpr std::string_view kAuthLimitDetail = "too many token checks waiting at the server; try again later";

struct Requirement {
  auth::Right right;
  enum class Scope : std::uint8_t { kNone, kName, kListPrefix, kEverywhere, kAnyAcquireOrSignal } scope;
};

// The contract's rights by verb (docs/security.md, "What each right allows").
Requirement requirement_of(Verb verb) {
  using S = Requirement::Scope;
  using R = auth::Right;
  switch (verb) {
    case Verb::kGet:
    case Verb::kHolders:
    case Verb::kWaiters:
      return {R::kRead, S::kName};
    case Verb::kList:
      return {R::kRead, S::kListPrefix};
    case Verb::kSessions:
    case Verb::kStats:
      return {R::kRead, S::kEverywhere};
    case Verb::kAcquire:
    case Verb::kRelease:
      return {R::kAcquire, S::kName};
    case Verb::kCancel:
      return {R::kAcquire, S::kAnyAcquireOrSignal};
    case Verb::kPost:
    case Verb::kWait:
    case Verb::kCreate:
    case Verb::kDelete:
      return {R::kSignal, S::kName};
    case Verb::kKick:
    case Verb::kCluster:
      return {R::kAdmin, S::kEverywhere};
    case Verb::kHello:
    case Verb::kPing:
    case Verb::kQuit:
    case Verb::kAuth:
    case Verb::kOption:
    case Verb::kLease:
    case Verb::kResumable:
    case Verb::kResume:
    case Verb::kMine:
    case Verb::kLeader:
      break;
  }
  return {R::kRead, S::kNone};
}

}  // namespace

std::optional<auth::Rights> Dispatcher::rights_of(const SessionState& session) const {
  if (session.rights) return session.rights;
  if (config_.auth.required()) return std::nullopt;
  return auth::Rights::unauthenticated_default(config_.admin_networks.allows(session.address));
}

bool Dispatcher::permitted(SessionState& session, std::string_view tag) {
  const Verb verb = request_.verb;
  // LEASE too: the session timeout applies to a session before its AUTH.
  // And the session's own verbs of 1.2: RESUME shows the session's secret
  // (a new connection has authenticated nothing yet: it AUTHs after), MINE
  // lists only the session's own, LEADER is where to connect.
  if (verb == Verb::kHello || verb == Verb::kPing || verb == Verb::kQuit || verb == Verb::kAuth ||
      verb == Verb::kLease || verb == Verb::kResumable || verb == Verb::kResume || verb == Verb::kMine ||
      verb == Verb::kLeader) {
    return true;
  }
  if (!session.rights && !session.tls_subject.empty()) {
    // A client certificate listed in [tls_subjects] needs no AUTH.
    if (const auth::Rights* mapped = config_.auth.find_subject(session.tls_subject)) session.rights = *mapped;
  }
  if (!session.rights) {
    answer_error(session, tag, ErrorCode::kAuth, "authenticate first: AUTH <token>");
    return false;
  }
  const auth::Rights& rights = *session.rights;
  const Requirement need = requirement_of(verb);
  using S = Requirement::Scope;
  bool ok = true;
  switch (need.scope) {
    case S::kNone:
      return true;
    case S::kName:
      ok = rights.allows(need.right, request_.name);
      break;
    case S::kListPrefix:
      ok = request_.has_name ? rights.allows_prefix(need.right, request_.name) : rights.allows_everywhere(need.right);
      break;
    case S::kEverywhere:
      ok = rights.allows_everywhere(need.right);
      break;
    case S::kAnyAcquireOrSignal:
      ok = rights.has(auth::Right::kAcquire) || rights.has(auth::Right::kSignal);
      break;
  }
  if (ok) return true;
  std::string why = fmt::format("{} needs the {} right", protocol::verb_name(verb), auth::right_name(need.right));
  if (need.scope == S::kEverywhere) {
    why += " on every name (no prefix)";
  } else if (verb == Verb::kList) {
    why += request_.has_name ? " on every name the prefix covers" : " on every name (give a prefix you may read)";
  } else if (need.scope == S::kAnyAcquireOrSignal) {
    why = "CANCEL needs the acquire or signal right";
  }
  answer_error(session, tag, ErrorCode::kDenied, why);
  return false;
}

void Dispatcher::handle_auth(SessionState& session, std::string_view tag) {
  if (!config_.auth.required()) {
    // No token to check against: the default rights, so that clients can be
    // given tokens before the server requires them.
    protocol::append_ok_text(session.out, tag, rights_of(session)->names());
    return;
  }
  const std::string_view token = request_.text;
  std::optional<auth::TokenVerifier::Outcome> known;
  if (verifier_ == nullptr) known.emplace();  // nothing can check it: a failure
  if (!known) known = verifier_->lookup(token);
  if (known) {
    finish_auth(session, tag, *known);
    return;
  }
  session.auth_pending = true;
  session.auth_tag.assign(tag);
  // Cluster mode: the nonce, as the session may have no id yet.
  const SessionId id = cluster_mode() ? session.log.nonce : session.id;
  const bool queued = verifier_->verify(std::string(token), [this, id, post = post_](auth::TokenVerifier::Outcome o) {
    post([this, id, outcome = std::move(o)] { auth_checked(id, outcome); });
  });
  if (!queued) {
    // Too many checks waiting (a flood of unknown tokens): nothing is known
    // of this token, so it is no failure (five would close the session of
    // a good client), but a server limit the client may retry after.
    session.auth_pending = false;
    session.auth_tag.clear();
    ++counters_.limited_total;
    logs_.log(logs_.refused, "session {} ({}): AUTH answered LIMIT: {} token checks waiting", session.id, session.peer,
              auth::TokenVerifier::kMaxQueued);
    protocol::append_error(session.out, tag, ErrorCode::kLimit, kAuthLimitDetail);
  }
}

void Dispatcher::auth_checked(SessionId id, const auth::TokenVerifier::Outcome& outcome) {
  const auto& by_key = cluster_mode() ? by_nonce_ : sessions_;
  const auto found = by_key.find(id);
  if (found == by_key.end() || !found->second->auth_pending) return;
  SessionState& session = *found->second;
  session.auth_pending = false;
  const std::string tag = std::move(session.auth_tag);
  session.auth_tag.clear();
  begin_turn();
  finish_auth(session, tag, outcome);
  session.events->input_resumable();
}

void Dispatcher::finish_auth(SessionState& session, std::string_view tag, const auth::TokenVerifier::Outcome& outcome) {
  // A token removed or re-hashed by a reload while it was checked no longer counts.
  const auth::TokenEntry* listed = outcome ? config_.auth.find_token(outcome->name) : nullptr;
  if (listed != nullptr && listed->hash == outcome->hash) {
    session.rights = listed->rights;
    session.token_name = listed->name;
    session.token_hash = listed->hash;
    protocol::append_ok_text(session.out, tag, listed->rights.names());
    logs_.event(logs_.sessions, "session authenticated",
                {{"session", session.id}, {"peer", session.peer}, {"token", listed->name}});
    return;
  }
  ++counters_.auth_failures_total;
  ++session.auth_failures;
  logs_.log(logs_.auth, "session {} ({}): AUTH failed ({} of {})", session.id, session.peer, session.auth_failures,
            kMaxAuthFailures);
  if (session.auth_failures >= kMaxAuthFailures) {
    protocol::append_error(session.out, tag, ErrorCode::kAuth, "the token is not valid");
    end_with_error(session, stats::EndCause::kError, ErrorCode::kAuth, "too many failed AUTH");
    return;
  }
  protocol::append_error(session.out, tag, ErrorCode::kAuth, "the token is not valid");
}

std::size_t Dispatcher::reauthorize(bool was_required) {
  std::vector<SessionState*> ended;
  const bool required = config_.auth.required();
  // Cluster mode: every session here, an id from the log or not yet.
  for (const auto& [id, session] : cluster_mode() ? by_nonce_ : sessions_) {
    if (session->dialect == protocol::Dialect::kAce) {
      if (session->rights) session->rights = config_.ace_rights;
      continue;
    }
    if (!required) {
      session->rights.reset();
      continue;
    }
    if (!session->token_name.empty()) {
      const auth::TokenEntry* listed = config_.auth.find_token(session->token_name);
      if (listed != nullptr && listed->hash == session->token_hash) {
        session->rights = listed->rights;
        continue;
      }
    } else if (session->rights && !session->tls_subject.empty()) {
      // Rights of a certificate subject: re-mapped, or revoked.
      if (const auth::Rights* mapped = config_.auth.find_subject(session->tls_subject)) {
        session->rights = *mapped;
        continue;
      }
    } else if (was_required) {
      continue;  // never authenticated, held nothing: it may still AUTH
    }
    ended.push_back(session);
  }
  for (SessionState* session : ended) {
    const char* why = !session->token_name.empty() ? "the session's token was revoked by a reload"
                      : session->rights            ? "the session's certificate subject was revoked by a reload"
                                                   : "authentication is now required: reconnect and AUTH";
    spdlog::info("session {} ({}): {}", session->id, session->peer, why);
    end_with_error(*session, stats::EndCause::kKicked, ErrorCode::kKicked, why);
  }
  return ended.size();
}

void Dispatcher::handle_take(SessionState& session, TakeMode mode) {
  TakeRequest take;
  take.session = session.id;
  take.tag = request_.tag;
  take.name = request_.name;
  take.mode = mode;
  take.count = request_.count;
  take.timeout_ms = request_.timeout_ms;
  take.now = now();
  const TakeResult result = table_->take(take, completions_);
  answers::append_take(session, take.tag, request_.verb, take.name, result);
  deliver_completions();
}

void Dispatcher::answer_error(SessionState& session, std::string_view tag, ErrorCode code, std::string_view detail) {
  answers::append_request_error(session.out, tag, request_.verb, request_.name, code, detail);
}

void Dispatcher::end_with_error(SessionState& session, stats::EndCause cause, ErrorCode code,
                                std::string_view message) {
  // The session ends: answers still waiting for the journal will never be
  // acknowledged, so they are dropped, and the line that says why goes out
  // now instead of behind them (a kicked peer is told KICKED even while the
  // journal cannot write). Their records are written when it can.
  const std::size_t sendable = sendable_end(session);
  if (sendable < session.out.size()) {
    session.out.resize(sendable);
    session.holds.clear();
  }
  answers::end_with_error(session, cause, code, message);
}

// --- LIST ---

void Dispatcher::start_list(SessionState& session) {
  session.list.emplace();
  session.list->tag.assign(request_.tag);
  if (request_.has_name) session.list->prefix.assign(request_.name);
  produce_list(session);  // a short LIST is done here, and the batch goes on
  // The stall limit applies even without a session timeout.
  if (session.list) session.events->timer_changed();
}

bool Dispatcher::produce_list(SessionState& session) {
  if (!session.list || session.unwritten() >= kStreamLowWater) return false;
  touch_in_log(session);  // taking a LIST's lines is activity
  SessionState::ListStream& list = *session.list;
  std::string& out = session.out;
  const std::size_t stop_at = out.size() + kStreamLowWater;
  if (list.kind != SessionState::ListStream::Kind::kList) {
    if (!produce_rows(session, stop_at)) {
      protocol::append_end(out, list.tag, list.count);
      session.list.reset();
    }
    return true;
  }
  bool more = false;
  std::string_view last;
  // Each line shows its semaphore as it is when the line is made; the cursor
  // is the last name, so names come in byte order, each at most once, even
  // as the table changes between chunks.
  view().list_after(list.prefix, list.last, [&](const SemaphoreInfo& info) {
    if (out.size() >= stop_at) {
      more = true;
      return false;
    }
    protocol::append_item(out, list.tag, view_of(info));
    ++list.count;
    last = info.name;
    return true;
  });
  if (!last.empty()) list.last.assign(last);
  if (!more) {
    protocol::append_end(out, list.tag, list.count);
    session.list.reset();
  }
  return true;
}

// --- STATS ---

void Dispatcher::append_stats(SessionState& session, std::string_view tag) {
  // In a cluster: no journal fields, a `cluster` object (stats/cluster_figures.h).
  const std::optional<stats::ClusterFigures> cluster = cluster_figures();
  protocol::append_ok_text(session.out, tag, stats::to_json(stats_snapshot(), cluster ? &*cluster : nullptr));
}

std::optional<stats::ClusterFigures> Dispatcher::cluster_figures() const {
  if (sink_ == nullptr) return std::nullopt;
  return sink_->cluster_figures();
}

stats::Snapshot Dispatcher::stats_snapshot() const {
  stats::Snapshot figures;
  const TableStats table = view().stats();
  figures.gauges.sessions = table.sessions;
  figures.gauges.semaphores = table.semaphores;
  figures.gauges.held = table.held;
  figures.gauges.waiters = table.waiters;
  figures.gauges.last_fence = table.last_fence;
  // The clock afresh, not the turn's time: the status timer asks between turns.
  const Clock::time_point now = clock_(clock_context_);
  figures.gauges.uptime_s =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now - started_).count());
  figures.gauges.session_timeout_ms = static_cast<std::uint64_t>(config_.session_timeout_ms);
  if (grants_held_until_ && *grants_held_until_ > now) {
    figures.gauges.lease_wait_ms =
        static_cast<std::uint64_t>(std::chrono::ceil<std::chrono::milliseconds>(*grants_held_until_ - now).count());
  }
  figures.gauges.journal_ok = journal_.ok() ? 1 : 0;
  const std::uint64_t sequence = journal_.sequence();
  const std::uint64_t answerable = journal_.answerable_sequence();
  figures.gauges.journal_pending_records = sequence > answerable ? sequence - answerable : 0;
  figures.server = counters_;
  figures.table = view().counters();
  figures.journal = journal_.counters();
  return figures;
}

// --- ACE ---

void Dispatcher::handle_ace(SessionState& session, protocol::AceParser::Token token, std::string_view name) {
  // Input ACE's client never sends closes the session. Tokens not yet written
  // are dropped first: the client must not read `locked|` for a grant that the
  // close gives back at once (`acquire:x|garbage|` in one read).
  const auto refuse = [&session](std::string_view reason) {
    session.out.resize(session.out_sent);
    session.events->end(stats::EndCause::kError, reason);
  };
  if (token != protocol::AceParser::Token::kNeedMore && session.ace_stage == AceStage::kAwaitAcquire &&
      !config_.ace_networks.allows(session.address)) {
    logs_.log(logs_.ace, "session {} ({}): ACE refused: the peer is outside ace_networks", session.id, session.peer);
    refuse("ACE: outside ace_networks");
    return;
  }
  switch (token) {
    case protocol::AceParser::Token::kNeedMore:
      return;
    case protocol::AceParser::Token::kBad:
      logs_.log(logs_.ace, "session {} ({}): ACE: invalid input, closed", session.id, session.peer);
      refuse("ACE: invalid input");
      return;
    case protocol::AceParser::Token::kWait:
      session.last_activity = now();
      touch_in_log(session);
      return;
    case protocol::AceParser::Token::kRelease: {
      session.last_activity = now();
      if (session.ace_stage != AceStage::kHolding || session.log.pending) {
        refuse("ACE: release while not holding");
        return;
      }
      if (cluster_mode()) {
        // The session's close gives the permit back: `ok|` when it is
        // applied (write_answer), then the session ends.
        session.log.pending = true;
        session.log.verb = Verb::kQuit;
        session.log.closed = true;
        sink_->submit(replication::CloseSession{session.id, origin_, replication::CloseCause::kQuit});
        return;
      }
      std::int64_t value = 0;
      const auto error = table_->release(session.id, session.ace_name, 1, value, completions_);
      deliver_completions();
      answers::ace_released(session, error);
      return;
    }
    case protocol::AceParser::Token::kAcquire: {
      session.last_activity = now();
      if (session.ace_stage != AceStage::kAwaitAcquire || session.log.pending ||
          protocol::check_name(name) != ErrorCode::kNone) {
        refuse("ACE: unexpected acquire");
        return;
      }
      if (config_.auth.required()) {
        // ACE's client cannot AUTH: ace_rights are its rights.
        session.rights = config_.ace_rights;
        if (!config_.ace_rights.allows(auth::Right::kAcquire, name)) {
          logs_.log(logs_.ace, "session {} ({}): ACE acquire refused: {} is outside ace_rights", session.id,
                    session.peer, escape_for_log(name));
          refuse("ACE: name outside ace_rights");
          return;
        }
      }
      ++counters_.requests;
      session.ace_name.assign(name);
      if (cluster_mode()) {
        submit_ace_acquire(session);
        return;
      }
      TakeRequest take;
      take.session = session.id;
      take.tag = kAceTag;
      take.name = session.ace_name;
      take.now = session.last_activity;
      const TakeResult result = table_->take(take, completions_);
      deliver_completions();
      answers::ace_take(session, result, logs_);
      return;
    }
  }
}

void Dispatcher::ace_heartbeat(SessionState& session) {
  // At most one `wait|` a second and never a backlog: skip a beat while an
  // earlier token is still unwritten.
  if (session.unwritten() == 0) session.out.append(protocol::kAceWait);
  touch_in_log(session);  // a single server never expires a queued ACE session
}

// --- completions ---

void Dispatcher::deliver_completions() {
  // A delivery can end a session, whose close appends more completions: the
  // outer loop picks them up, so a nested call returns at once.
  if (delivering_ || completions_.empty()) return;
  delivering_ = true;
  for (std::size_t i = 0; i < completions_.size(); ++i) {
    const Completion completion = std::move(completions_[i]);
    const auto found = sessions_.find(completion.session);
    if (found != sessions_.end()) deliver(*found->second, completion);
  }
  completions_.clear();
  delivering_ = false;
  // Grants come with completions only, so slow ones are looked for here.
  if (table_->has_slow_grants()) log_slow_grants();
}

// --- the log ---

void Dispatcher::log_end(const SessionState& session, stats::EndCause cause) {
  if (!spdlog::should_log(logs_.sessions.level())) return;
  answers::log_end(logs_, session, cause, view().session_load(session.id), now());
}

void Dispatcher::log_slow_grants() {
  std::vector<SlowGrant> slow = table_->take_slow_grants();
  for (const SlowGrant& grant : slow) {
    const auto found = sessions_.find(grant.session);
    answers::log_slow_grant(logs_, grant, found == sessions_.end() ? nullptr : found->second);
  }
}

void Dispatcher::deliver(SessionState& session, const Completion& completion) {
  // A completion caused by a change the journal has not written yet (a WAIT
  // granted by a POST, say) waits for it, like the answer to the change.
  if (const std::uint64_t dependency = answer_dependency()) session.holds.push_back({session.out.size(), dependency});
  answers::deliver(session, completion, now());
}

// --- time, configuration, output ---

void Dispatcher::hold_grants_until(Clock::time_point until) {
  if (table_ == nullptr) return;  // cluster mode: no lease wait (the log kept the holders)
  grants_held_until_ = until;
  table_->hold_grants();
}

std::chrono::milliseconds Dispatcher::lease_wait_after(const journal_format::RunRecord& previous,
                                                       std::int64_t session_timeout_ms) {
  using State = journal_format::RunRecord::State;
  if (previous.state == State::kNone) return {};
  if (previous.state == State::kStopped && previous.held == 0) return {};
  return std::chrono::milliseconds(std::max(previous.session_timeout_ms, session_timeout_ms));
}

void Dispatcher::expire() {
  read_clock();                   // a deadline timer fired: its time, not an earlier one of this turn
  if (table_ == nullptr) return;  // cluster mode: the leader's AdvanceTime times requests out
  // Requests whose time ran out leave first: the end of the lease wait
  // grants only those still waiting.
  table_->expire(now_, completions_);
  expire_detached();
  if (grants_held_until_ && *grants_held_until_ <= now_) {
    grants_held_until_.reset();
    table_->resume_grants(completions_);
  }
  deliver_completions();
}

std::vector<std::string> Dispatcher::reconfigure(const std::vector<std::pair<std::string, std::int64_t>>& limits) {
  if (table_ == nullptr) return {};  // cluster mode: the leader proposes Reconfigure
  (void)now();                       // the table's time, for the grants this makes
  auto created = table_->configure_defined(limits, completions_);
  deliver_completions();
  return created;
}

std::size_t Dispatcher::sendable_end(SessionState& session) const {
  if (session.holds.empty()) return session.out.size();
  const std::uint64_t answerable = journal_.answerable_sequence();
  const std::size_t size = session.out.size();
  std::erase_if(session.holds,
                [&](const SessionState::AnswerHold& h) { return h.sequence <= answerable || h.offset >= size; });
  std::size_t end = size;
  for (const SessionState::AnswerHold& h : session.holds) end = std::min(end, h.offset);
  return end;
}

Clock::duration Dispatcher::idle_timeout(const SessionState& session) const {
  const auto configured = std::chrono::milliseconds(config_.session_timeout_ms);
  if (session.list) {
    // Requests wait behind the LIST, so taking its lines is the activity.
    const Clock::duration stall = kStreamStallTime;
    return configured.count() > 0 ? std::min<Clock::duration>(configured, stall) : stall;
  }
  if (configured.count() <= 0) return Clock::duration::zero();
  if (session.dialect != protocol::Dialect::kAce) return configured;
  switch (session.ace_stage) {
    case AceStage::kAwaitAcquire:
      return configured;  // an unfinished `acquire:` is not activity
    case AceStage::kQueued:
      return Clock::duration::zero();  // a queued ACE client has nothing to send
    case AceStage::kHolding:
      // ACE holders ping every 3 s; a shorter timeout would drop healthy ones.
      return configured < kAceMinIdleTimeout ? Clock::duration::zero() : configured;
  }
  return configured;
}

}  // namespace netsem::server
