// The Dispatcher's sessions that outlive their connection and the LEADER
// verb (proposed 1.2, dispatcher.h): RESUMABLE (the session's id and
// secret), RESUME (a new connection takes a session over: on one server
// from a detached session or an older connection, in cluster mode through
// a ResumeSession in the log, resumed_in_log answering it; a probe first
// when this server's replica does not know the session), MINE (what the
// session holds and waits for), LEADER (where to connect), and the expiry
// of a single server's detached sessions.
#include <spdlog/spdlog.h>

#include <random>

#include <fmt/format.h>

#include "common/text.h"
#include "core/dispatcher.h"
#include "protocol/names.h"

namespace netsem::server {

using protocol::ErrorCode;
using protocol::Verb;
using replication::Answer;

namespace {

// A resume secret: 32 hex digits (128 bits) from the system's random source.
constexpr std::size_t kSecretBytes = 16;

}  // namespace

std::string Dispatcher::make_secret() {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::random_device random;
  std::string secret;
  secret.reserve(kSecretBytes * 2);
  for (std::size_t i = 0; i < kSecretBytes; i += 4) {
    std::uint32_t bits = random();
    for (int byte = 0; byte < 4; ++byte, bits >>= 8) {
      secret.push_back(kHex[(bits >> 4) & 0xf]);
      secret.push_back(kHex[bits & 0xf]);
    }
  }
  return secret;
}

// --- one server and both modes ---

void Dispatcher::resumable(SessionState& session, std::string_view tag) {
  if (!cluster_mode()) {
    if (session.log.secret.empty()) session.log.secret = make_secret();
    answer_resumable(session, tag);
    return;
  }
  if (session.log.opened) {
    answer_resumable(session, tag);
    return;
  }
  // Opened in the log first: its id and secret come with the open
  // (opened_in_log answers).
  session.log.pending = true;
  session.log.verb = Verb::kResumable;
  session.log.tag.assign(tag);
  if (!session.log.opening) open_in_log(session);
}

void Dispatcher::resume(SessionState& session, std::string_view tag) {
  if (session.requested || session.log.opened || session.log.opening) {
    return answer_error(session, tag, ErrorCode::kBusy, "RESUME must be the first request of a connection");
  }
  std::uint64_t id = 0;
  (void)protocol::parse_session_id(request_.session_id, id);  // the parser checked it
  const std::string_view secret = request_.secret;
  if (cluster_mode()) {
    if (const auto found = resuming_.find(id); found != resuming_.end() && found->second.session != nullptr) {
      return answer_error(session, tag, ErrorCode::kBusy, "another connection is resuming this session");
    }
    session.log.pending = true;
    session.log.verb = Verb::kResume;
    session.log.tag.assign(tag);
    const auto record = replica_->sessions().find(id);
    if (record == replica_->sessions().end()) {
      // This replica may lag (or this server has just restarted): the log
      // says whether the session lives before NOT_FOUND is answered.
      spdlog::debug("session {} unknown to this replica: RESUME from {} probes the log", id, session.peer);
      return submit_resume(session, id, secret, replication::kResumeProbe);
    }
    return submit_resume(session, id, secret, record->second.host);
  }
  std::string label;
  if (const auto detached = detached_.find(id); detached != detached_.end()) {
    if (!same_secret(detached->second.secret, secret)) {
      return answer_error(session, tag, ErrorCode::kDenied, "wrong secret");
    }
    label = std::move(detached->second.label);
    detached_.erase(detached);
  } else if (const auto live = sessions_.find(id); live != sessions_.end() && live->second != &session) {
    SessionState& old = *live->second;
    if (!old.log.resumable || !same_secret(old.log.secret, secret)) {
      return answer_error(session, tag, ErrorCode::kDenied, "wrong secret");
    }
    if (old.auth_pending) {
      // Its AUTH's outcome finds the session by id: it must not reach this
      // connection instead.
      return answer_error(session, tag, ErrorCode::kBusy, "the session's connection is authenticating; retry");
    }
    label = old.label;
    // The older connection may be half-open: the newer one is the client's
    // choice. Its end gives nothing back (end_session sees it is not the
    // session's connection any more).
    sessions_[id] = &session;
    sessions_by_id_[id] = &session;
    move_off(old, "peer " + session.peer);
  } else {
    return answer_error(session, tag, ErrorCode::kNotFound, "no such session (it ended: its permits are gone)");
  }
  // The fresh session this connection began is discarded (it has done
  // nothing: RESUME is its first request).
  table_->close_session(session.id, completions_);
  sessions_.erase(session.id);
  sessions_by_id_.erase(session.id);
  session.id = id;
  sessions_[id] = &session;
  sessions_by_id_[id] = &session;
  session.label = std::move(label);
  session.log.secret.assign(secret);
  session.log.resumable = true;
  logs_.event(logs_.sessions, "session resumed", {{"session", session.id}, {"peer", session.peer}});
  protocol::append_ok_text(session.out, tag,
                           std::to_string(id) + " " + std::to_string(table_->session_load(id).pending));
  deliver_completions();
}

void Dispatcher::submit_resume(SessionState& session, SessionId id, std::string_view secret,
                               replication::ServerId from_host) {
  session.log.resuming = id;
  resuming_[id] = Resuming{&session, from_host, std::string(secret)};
  sink_->submit(replication::ResumeSession{id, origin_, replication::secret_digest(secret), from_host});
}

void Dispatcher::mine(SessionState& session, std::string_view tag) {
  std::uint64_t count = 0;
  if (!cluster_mode() || session.log.opened) {
    view().session_items(
        session.id,
        [&](const SessionHolding& held) {
          protocol::append_mine_held(session.out, tag, held.name, held.count, held.fence);
          ++count;
        },
        [&](const SessionWaiting& queued) {
          protocol::append_mine_queued(session.out, tag, queued.tag, queued.name, queued.count);
          ++count;
        });
  }
  protocol::append_end(session.out, tag, count);
}

void Dispatcher::leader(SessionState& session, std::string_view tag) {
  const std::string address = cluster_mode() ? sink_->leader_client_address() : own_address_;
  if (address.empty()) return answer_error(session, tag, ErrorCode::kBusy, "no leader now; retry");
  protocol::append_ok_text(session.out, tag, address);
}

std::optional<Clock::time_point> Dispatcher::next_detached_expiry() const {
  if (detached_.empty() || config_.session_timeout_ms <= 0) return std::nullopt;
  std::optional<Clock::time_point> next;
  for (const auto& [id, detached] : detached_) {
    if (!next || detached.last_activity < *next) next = detached.last_activity;
  }
  return *next + std::chrono::milliseconds(config_.session_timeout_ms);
}

void Dispatcher::expire_detached() {
  if (detached_.empty()) return;
  const auto timeout = std::chrono::milliseconds(config_.session_timeout_ms);
  for (auto it = detached_.begin(); it != detached_.end();) {
    if (timeout.count() > 0 && now_ - it->second.last_activity < timeout) {
      ++it;
      continue;
    }
    logs_.log(logs_.timeout, "session {}: not resumed within {} ms, closed and released", it->first,
              config_.session_timeout_ms);
    // (Its end was counted when its connection ended: STATS counts each
    // session's end once.)
    table_->close_session(it->first, completions_);
    it = detached_.erase(it);
  }
}

// --- cluster mode: the log's answer to a RESUME ---

void Dispatcher::answer_resumable(SessionState& session, std::string_view tag) {
  session.log.resumable = true;
  std::string text = std::to_string(session.id);
  text.push_back(' ');
  text.append(session.log.secret);
  protocol::append_ok_text(session.out, tag, text);
}

void Dispatcher::move_off(SessionState& old, std::string_view to) {
  spdlog::info("session {} ({}) moved to another connection ({})", old.id, old.peer, to);
  old.moved = true;
  // The wire keeps 1.1's line, which the clients read (1.2 proposes `* ERR
  // MOVED`); the cause is never counted (end_session sees `moved`).
  if (old.open) end_with_error(old, stats::EndCause::kKicked, ErrorCode::kKicked, "resumed on another connection");
}

void Dispatcher::detach_resumed(SessionState& old, std::string_view to) {
  old.log.closed = true;  // the session goes on elsewhere: its end here closes nothing in the log
  old.log.pending = false;
  if (const auto found = sessions_.find(old.id); found != sessions_.end() && found->second == &old) {
    sessions_.erase(found);
  }
  move_off(old, to);
}

void Dispatcher::resumed_in_log(const replication::ResumeSession& resume, const Answer& answer) {
  if (resume.origin != origin_) {
    // Taken by another server: a connection of it here goes.
    if (answer.type != Answer::Type::kOk) return;
    if (const auto found = sessions_.find(resume.session); found != sessions_.end()) {
      detach_resumed(*found->second, fmt::format("on server {}", resume.origin));
    }
    return;
  }
  const auto found = resuming_.find(resume.session);
  // Not this run's, or an earlier ResumeSession of it proposed again
  // (ClusterNode sends a command again when no apply came in time): its
  // answer is not the one awaited.
  if (found == resuming_.end() || found->second.from_host != resume.from_host) return;
  // Nor is one for another secret: a RESUME whose connection ended may
  // still be in the log when another connection here resumes the session;
  // that one's answer must come from its own secret.
  if (!replication::same_secret_digest(replication::secret_digest(found->second.secret), resume.secret_digest)) return;
  SessionState* const waiting = found->second.session;
  // The client's secret in clear: the entry holds only its digest.
  const std::string secret = std::move(found->second.secret);
  resuming_.erase(found);
  if (waiting == nullptr) {
    // Its connection ended meanwhile: the session stays in the log, hosted
    // here with no connection, until a RESUME or the log's expiry.
    if (answer.type == Answer::Type::kOk) {
      if (const auto here = sessions_.find(resume.session); here != sessions_.end()) {
        detach_resumed(*here->second, "a connection here that ended meanwhile");
      }
    }
    return;
  }
  SessionState& session = *waiting;
  if (resume.from_host == replication::kResumeProbe && answer.type == Answer::Type::kNotHost) {
    // The probe found the session alive, hosted by answer.number (this
    // replica has now applied every entry before the probe): the RESUME
    // goes on as if the session had been known, once (a real ResumeSession
    // that finds another host answers BUSY below, never probes again).
    return submit_resume(session, resume.session, secret, answer.number);
  }
  const std::string tag = session.log.tag;
  session.log.pending = false;
  session.log.resuming = 0;
  switch (answer.type) {
    case Answer::Type::kOk: {
      if (const auto here = sessions_.find(resume.session); here != sessions_.end() && here->second != &session) {
        detach_resumed(*here->second, "peer " + session.peer);
      }
      session.id = resume.session;
      session.log.opened = true;
      session.log.closed = false;
      session.log.seq = answer.number;  // the new host counts on from the log's last seq
      session.log.secret = secret;
      session.log.resumable = true;
      session.log.touched = now();
      if (const auto record = replica_->sessions().find(resume.session); record != replica_->sessions().end()) {
        session.label = record->second.label;
      }
      sessions_[session.id] = &session;
      logs_.event(logs_.sessions, "session resumed", {{"session", session.id}, {"peer", session.peer}});
      std::string text = std::to_string(session.id);
      text.push_back(' ');
      text.append(std::to_string(view().session_load(session.id).pending));
      protocol::append_ok_text(session.out, tag, text);
      break;
    }
    case Answer::Type::kError:
      answer_error(session, tag, answer.error == ErrorCode::kNone ? ErrorCode::kDenied : answer.error, "wrong secret");
      break;
    case Answer::Type::kNotHost:
      answer_error(session, tag, ErrorCode::kBusy, "the session was resumed on another connection meanwhile");
      break;
    default:
      answer_error(session, tag, ErrorCode::kNotFound, "no such session (it ended: its permits are gone)");
      break;
  }
  if (session.open && !session.input_held()) session.events->input_resumable();
}

}  // namespace netsem::server
