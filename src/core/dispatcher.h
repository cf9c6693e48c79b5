// Dispatcher: what netsemd decides, with no socket. It takes a session's
// parsed request (a protocol v1 line, an ACE token) and the session's state,
// calls the semaphore table, and appends the answer to the session's output;
// the completions the table reports for other sessions' queued requests it
// appends to theirs. The mapping from a table result (granted, queued, timed
// out, cancelled, error) to an answer, for v1 and for ACE, is answers.h's,
// shared with the server on the replicated log; the dispatcher owns the
// policies that depend on no socket: which answers wait for the journal,
// how a LIST streams, the idle timeout of a session.
//
// API: the network layer frames the bytes it reads (protocol::LineFramer,
// protocol::AceParser) and calls begin_session() when a connection starts,
// handle_line() per v1 line or handle_ace() per ACE token, produce_list()
// as a streaming LIST's output drains, end_session() when the connection
// ends (permits back, queued requests dropped); the server calls expire()
// from its deadline timer and reconfigure() on reload. Answers go to
// SessionState::out; the network layer writes it up to sendable_end().
// Time comes from the injected clock, read once per turn (now()), so tests
// drive timeouts by hand and a batch of requests reads the clock once.
//
// Journal: an answer that depends on a journal record the journal has not
// yet written (a POST, a grant that changed a created semaphore, a CREATE)
// is held (SessionState::holds) until JournalProgress::answerable_sequence()
// reaches it; the session's later answers wait behind it, others do not.
//
// How to add a verb (protocol v1): teach the codec (src/protocol/codec.*:
// the Verb, parse_request, the answer's append_*), add its case to
// Dispatcher::handle_request (dispatcher.cc), test it in
// tests/core/dispatcher_test.cc, and describe it in docs/protocol.md.
// Nothing in the network layer changes.
//
// How a blocking verb completes (as redis's blocked.c): the verb calls the
// table, which either answers at once (granted, timed out, an error) or
// queues the request under the session's tag and answers QUEUED. Whatever
// later finishes a queued request (a RELEASE or POST of another session,
// expire() at its deadline, a CANCEL, end_session() of a holder, a reload)
// makes the table append a Completion; the dispatcher delivers each to its
// session's output (deliver_completions, in the order they happened, after
// the answer of the request that caused them) and tells the session
// (SessionEvents::completion_added) so it is written in the same turn. A
// new blocking verb adds a Completion::Type if it needs a new answer, and
// maps it in answers::deliver().
//
// Cluster mode (issue 16, docs/replication.md "The servers"): constructed
// over a CommandSink and the server's loop replica (a read-only
// replication::StateMachine) instead of a table and a journal, the same
// class answers the sessions a server of the cluster hosts. It changes no
// table: a state-changing verb (request_from_protocol's) becomes a
// SessionRequest with this server's id (origin) and the session's next seq,
// submitted to the sink, and the session's later lines wait (input_held)
// until apply_results(), called once the loop replica applied the entry,
// writes its answer; reads (GET, LIST, HOLDERS, WAITERS, SESSIONS, STATS)
// read the replica's table; session-local verbs (PING, LEASE, OPTION, AUTH,
// QUIT) are answered here as in single mode, rights checked before
// anything is submitted. A session is opened in the log (OpenSession with
// origin, a nonce and a random resume secret) by its first command, when
// its dialect is known (an ACE `acquire:` becomes OpenSession, then
// ACQUIRE); until then its id is 0. Its end submits CloseSession (cause
// closed, quit for QUIT and an ACE release) unless the log ended it.
// One class with two modes rather than a second dispatcher: everything but
// where a change is made (the table, or the log) is the same (rights, AUTH,
// the listings' streaming, session-local verbs, the API the network layer
// calls), and the answers are answers.h's in both. What cluster mode does
// not do: expire() and reconfigure() change nothing (the leader proposes
// AdvanceTime and Reconfigure), there is no lease wait and no journal hold.
//
// Sessions that outlive their connection (proposed 1.2: RESUMABLE, RESUME,
// MINE; docs/protocol.md), in both modes: a resumable session's connection
// that ends without QUIT or a kick leaves the session, its permits and its
// queue, for a RESUME on another connection (single mode: in the table,
// until the session timeout after its last activity, expire(); cluster
// mode: in the log, until the log's expiry, and RESUME may come to any
// server: a ResumeSession moves the session's host).
//
// Thread safety: none; the server uses it from its event-loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "auth/token_verifier.h"
#include "config/config.h"
#include "core/answers.h"
#include "core/command_sink.h"
#include "core/peer_logs.h"
#include "core/session_state.h"
#include "journal/journal_format.h"
#include "protocol/ace_codec.h"
#include "protocol/codec.h"
#include "replication/results.h"
#include "replication/state_machine.h"
#include "stats/stats.h"
#include "table/semaphore_table.h"

namespace netsem::server {

using Clock = std::chrono::steady_clock;

// The counters of the server's own events (stats/stats.h): the dispatcher
// bumps requests and session ends, the network layer the rest.
using ServerCounters = stats::ServerCounters;

// What the dispatcher reads of the journal: how far it has got. netsemd's
// server implements it over its FileJournal; tests over a MemoryJournal.
class JournalProgress {
 public:
  virtual ~JournalProgress() = default;
  // Records made so far (each change to a created semaphore is one): read
  // twice per request, so a counter, not a virtual call.
  std::uint64_t sequence() const { return *sequence_; }
  // Answers that depend on records up to this one may be sent.
  virtual std::uint64_t answerable_sequence() const = 0;
  // False while journal writes fail (STATS journal_ok).
  virtual bool ok() const = 0;
  // Its writes and fsync latencies (STATS); none by default, for a journal
  // that writes no file.
  virtual stats::JournalCounters counters() const { return {}; }

 protected:
  JournalProgress() = default;
  // sequence() reads `counter` from now on. REQUIRES: it outlives the
  // reads (until the next call).
  explicit JournalProgress(const std::uint64_t& counter) : sequence_(&counter) {}
  void set_sequence_counter(const std::uint64_t& counter) { sequence_ = &counter; }

 private:
  static constexpr std::uint64_t kNoRecords = 0;
  const std::uint64_t* sequence_ = &kNoRecords;
};

class Dispatcher {
 public:
  // A LIST produces ITEM lines while less than this is waiting to be
  // written, a chunk of about this much at a time.
  static constexpr std::size_t kStreamLowWater = 32 << 10;
  // A LIST whose peer takes none of its lines for this long (or for the
  // session timeout, when shorter) has stopped reading.
  static constexpr std::chrono::seconds kStreamStallTime{30};
  // The shortest session timeout applied to ACE holders (they send a
  // keep-alive every 3 s).
  static constexpr std::chrono::seconds kAceMinIdleTimeout{10};
  // The ACE client expects a `wait|` about once a second while queued.
  static constexpr std::chrono::seconds kAceHeartbeat{1};

  // The clock: `clock(clock_context)` (steady_clock::now in netsemd, a
  // test's own time in tests); a plain function, not a std::function.
  using ClockFunction = Clock::time_point (*)(const void* context);

  // All references must outlive the dispatcher, and `clock_context` the
  // calls to `clock`. `config` is read at each use (session_timeout_ms may
  // change at start-up).
  Dispatcher(SemaphoreTable& table, const JournalProgress& journal, const ServerConfig& config,
             ServerCounters& counters, PeerLogs& logs, ClockFunction clock, const void* clock_context);
  // Cluster mode: this server is `origin` (its id in the cluster, >= 1);
  // commands go to `sink`, reads read `replica` (the loop replica, which
  // the caller applies entries to, then calls apply_results). References
  // as above.
  Dispatcher(const replication::StateMachine& replica, CommandSink& sink, replication::ServerId origin,
             const ServerConfig& config, ServerCounters& counters, PeerLogs& logs, ClockFunction clock,
             const void* clock_context);
  bool cluster_mode() const { return sink_ != nullptr; }
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // The time of this turn: the clock is read at the first use after
  // begin_turn() (and by expire()), then kept for the rest of the turn, and
  // given to the table (SemaphoreTable::set_time), which reads no clock. A
  // turn lasts microseconds; what it does is stamped with its start.
  Clock::time_point now() const {
    if (!now_read_) read_clock();
    return now_;
  }
  // When the server started (STATS uptime_s).
  void set_started(Clock::time_point started) { started_ = started; }
  // The address clients reach this server at ("host:port"): what a single
  // server answers LEADER (proposed 1.2). The network layer sets it once
  // it listens.
  void set_own_address(std::string address) { own_address_ = std::move(address); }

  // --- sessions ---

  // A session begins: the table knows it from now on, and it is in
  // sessions(). REQUIRES: not begun before.
  void begin_session(SessionState& session);
  // A session ends: gives back its permits, drops its queued requests (and
  // a LIST in progress), and delivers what that grants to others; the first
  // call counts `cause` (STATS session_ends_*). Safe to call more than
  // once, and from inside a delivery.
  void end_session(SessionState& session, stats::EndCause cause);
  // The open sessions, by id (protocol 1.1: SESSIONS, KICK).
  const std::unordered_map<SessionId, SessionState*>& sessions() const { return sessions_; }
  // The same sessions in id order (a page of them resumes in O(log n)).
  const std::map<SessionId, const SessionState*>& sessions_by_id() const { return sessions_by_id_; }
  // The label a listing shows for an open session: its HELLO label, "ace"
  // for an ACE session, "" for none.
  std::string_view label_of(SessionId id) const;
  // Ends session `id` as KICK does (its permits go back, a v1 peer is told
  // `* ERR KICKED <reason>`), for an administrator outside the protocol (the
  // HTTP API, which checks the right itself). False when no such session is
  // open. The caller ends the turn (the answers it made are written then).
  bool kick_session(SessionId id, std::string_view reason);
  // (Cluster mode.) For session `id` open in the log but hosted by another
  // server: "server N at <its client address>"; "" otherwise (hosted here,
  // no such session, a single server).
  std::string hosted_elsewhere(SessionId id) const;
  // The server is stopping: from now on end_session() only forgets a
  // session; it gives nothing back to the table, so no queued request is
  // granted while the sessions are told SHUTDOWN one after another (a
  // permit granted then would overlap its previous holder, still at work
  // through its lease). finish_shutdown() then gives every permit back at
  // once, granting nothing. REQUIRES: expire() is not called after.
  void begin_shutdown() { shutting_down_ = true; }
  void finish_shutdown() {
    if (table_ == nullptr) return;  // cluster mode: the log's sessions end by their closes
    (void)now();                    // the table's time, for the holds this ends (STATS hold_us)
    table_->close_all_sessions();
  }

  // --- authentication (docs/security.md) ---

  // Runs `work` on the event-loop thread, later (never inside the call).
  using LoopPost = std::function<void(std::function<void()>)>;
  // Where AUTH tokens are checked (off the loop) and how their outcome comes
  // back to it: through `post`, to auth_checked(). Without a verifier an
  // AUTH while tokens are configured is refused. REQUIRES: `verifier`
  // outlives the dispatcher; its tokens are config.auth.tokens.
  void set_token_verifier(auth::TokenVerifier* verifier, LoopPost post) {
    verifier_ = verifier;
    post_ = std::move(post);
  }
  // The check of session `id`'s AUTH ended (on the loop): its answer is
  // appended, its held requests go on (SessionEvents::input_resumable).
  // Nothing when the session ended meanwhile. The caller ends the turn.
  // (Cluster mode: `id` is the key the dispatcher's own post handed, the
  // session's nonce, as a session may have no id yet.)
  void auth_checked(SessionId id, const auth::TokenVerifier::Outcome& outcome);
  // The membership change of a session's CLUSTER ADD or REMOVE ended with
  // `outcome` (cluster mode; `key` the session's nonce): its answer is
  // appended and its held requests go on. Nothing when the session ended
  // meanwhile. The caller ends the turn.
  void membership_changed(std::uint64_t key, const Status& outcome);
  // The same for a session's CLUSTER FENCES: the new last fence, or why not.
  void fences_raised(std::uint64_t key, const Result<std::uint64_t>& outcome);
  // The authentication tables (config.auth) changed on reload: open
  // sessions follow them at once. A session authenticated by a token still
  // listed with the same hash gets its new rights; one whose token was
  // removed or re-hashed, or that had the default rights while
  // authentication is now required (`was_required`: it was before the
  // reload), is ended (`* ERR KICKED`); with no token left every session
  // gets the default rights. Returns how many were ended.
  std::size_t reauthorize(bool was_required);
  // The rights a session has now: its own (AUTH, ace_rights), or while no
  // token is configured the default (every right but admin, admin from
  // admin_networks); nullopt when it must authenticate first.
  std::optional<auth::Rights> rights_of(const SessionState& session) const;

  // --- requests ---

  // One protocol v1 line (without its terminator): parses it and answers.
  // False for an empty line, which is not a request (nor activity).
  bool handle_line(SessionState& session, std::string_view line);
  // One ACE token (`name` for kAcquire). An unexpected token refuses the
  // session silently (SessionEvents::end, unwritten tokens dropped).
  void handle_ace(SessionState& session, protocol::AceParser::Token token, std::string_view name);
  // A queued ACE session's heartbeat is due: a `wait|`, unless an earlier
  // token is still unwritten (never a backlog).
  void ace_heartbeat(SessionState& session);
  // Ends the session after telling a v1 peer why (`* ERR <code> <message>`;
  // an ACE peer is told nothing): a line too long, a NUL byte (cause
  // kError), a shutdown (kShutdown).
  void end_with_error(SessionState& session, stats::EndCause cause, protocol::ErrorCode code, std::string_view message);
  // Produces the next chunk of the session's LIST in progress, and its END
  // when it is done; false when there was nothing to produce (no LIST, or
  // kStreamLowWater still unwritten).
  bool produce_list(SessionState& session);

  // --- time and configuration ---

  // The lease wait after a restart: grants nothing until `until` (requests
  // queue, tries time out), then expire() grants every queue at once. The
  // server calls it at start when the previous run may have left holders
  // still working under their leases (lease_wait_after()).
  void hold_grants_until(Clock::time_point until);
  // How long a server whose data directory says `previous` must hold grants
  // (zero: none): one session timeout, the longer of the previous run's and
  // `session_timeout_ms`, unless the previous run stopped cleanly with no
  // permit held, there was none (a new data directory), or leases are off
  // (both timeouts 0).
  static std::chrono::milliseconds lease_wait_after(const journal_format::RunRecord& previous,
                                                    std::int64_t session_timeout_ms);
  // Times out the queued requests whose deadline is <= now(); at the end of
  // the lease wait, then grants what the queues let in.
  void expire();
  // The earliest deadline of a queued request, or the end of the lease
  // wait, if any.
  // (And the expiry of a resumable session whose connection ended.)
  std::optional<Clock::time_point> next_deadline() const {
    if (table_ == nullptr) return std::nullopt;  // cluster mode: the leader's AdvanceTime
    auto next = table_->next_deadline();
    if (grants_held_until_ && (!next || *grants_held_until_ < *next)) next = grants_held_until_;
    if (const auto detached = next_detached_expiry(); detached && (!next || *detached < *next)) next = detached;
    return next;
  }
  // Makes `limits` the defined semaphores (start, reload) and delivers what
  // that finishes; returns the listed names that are created semaphores.
  std::vector<std::string> reconfigure(const std::vector<std::pair<std::string, std::int64_t>>& limits);

  // --- cluster mode ---

  // The loop replica applied `entry`, which gave `results`: writes the
  // answers of the commands this server submitted (OpenSession: matched by
  // origin and nonce; a session's request: by its seq), delivers the
  // completions of the sessions it hosts, ends the hosted sessions the
  // entry ended (`* ERR KICKED ...` to a kicked v1 peer; an idle one closes
  // as on a single server's timeout), and lets held input go on
  // (SessionEvents::input_resumable). Answers kDuplicate and kNotHost write
  // nothing (they are logged). The caller ends the turn. REQUIRES: cluster
  // mode; `results` are the replica's for `entry`, entries in log order.
  void apply_results(const replication::Entry& entry, const replication::EntryResults& results);

  // The loop replica is about to be replaced by a snapshot (a follower far
  // behind is sent one): the entries between its index and the snapshot's
  // are never applied here, so their answers, grants and ends are never
  // seen. What each hosted session had in the table before, for
  // reconcile_restored(). REQUIRES: cluster mode.
  using HostedLoads = std::unordered_map<SessionId, SessionLoad>;
  HostedLoads hosted_loads() const;
  // After the restore: ends (closing its connection, and the session in the
  // log) every hosted session the skipped entries may have changed unseen:
  // one the snapshot no longer has, one whose pending request was applied
  // (its answer lost; a read is answered again instead), one whose holds or
  // queued requests differ from `before` (a grant or a timeout unseen), and
  // one still waiting for its OpenSession. A session nothing happened to
  // goes on. The caller ends the turn.
  void reconcile_restored(const HostedLoads& before);

  // --- figures ---

  // Every figure now (STATS, the status file): the counters of the server,
  // the table and the journal, and the gauges read from their owners.
  stats::Snapshot stats_snapshot() const;
  // In cluster mode, the sink's cluster figures (STATS' `cluster` object,
  // /metrics' netsem_cluster_*); nullopt for a single server.
  std::optional<stats::ClusterFigures> cluster_figures() const;

  // --- output ---

  // The end of what may be written of the session's output now: out.size(),
  // or the start of the first answer whose journal records are not yet
  // answerable (holds that became answerable are dropped).
  std::size_t sendable_end(SessionState& session) const;
  // How long the session may stay silent before it is closed and released;
  // zero for no limit. The session timeout, except: a LIST in progress
  // (taking its lines is the activity) at most kStreamStallTime; a queued
  // ACE session none (it has nothing to send); an ACE holder none when the
  // timeout is below kAceMinIdleTimeout.
  Clock::duration idle_timeout(const SessionState& session) const;
  // Whether the session's timer is the ACE heartbeat (a queued ACE session)
  // rather than the idle timeout.
  static bool wants_heartbeat(const SessionState& session) {
    return session.dialect == protocol::Dialect::kAce && session.ace_stage == AceStage::kQueued;
  }

  // A turn of the event loop begins (and its answers depend only on the
  // records it makes); its time is read at its first use. The network layer
  // calls it at the end of every turn (SessionHost::end_turn), so no time
  // outlives the turn that read it.
  void begin_turn() {
    request_sequence_ = journal_.sequence();
    now_read_ = false;
  }

 private:
  void handle_request(SessionState& session);
  void handle_take(SessionState& session, TakeMode mode);
  void start_list(SessionState& session);
  void answer_error(SessionState& session, std::string_view tag, protocol::ErrorCode code,
                    std::string_view detail = {});
  void append_stats(SessionState& session, std::string_view tag);
  // Protocol 1.1: HOLDERS, WAITERS and SESSIONS stream as LIST does, through
  // SessionState::list and produce_list(), so a listing of any length
  // reaches a peer that reads it with a bounded buffer; an absent name is
  // NOT_FOUND at once.
  void start_rows(SessionState& session, std::string_view tag, SessionState::ListStream::Kind kind);
  // Appends rows of the listing in progress until `stop_at` bytes of output;
  // true when more remain.
  bool produce_rows(SessionState& session, std::size_t stop_at);
  void kick(SessionState& session, std::string_view tag);
  // Whether the session may make request_ (answers ERR AUTH or ERR DENIED
  // when not): the contract's rights by verb, limited by prefix.
  bool permitted(SessionState& session, std::string_view tag);
  void handle_auth(SessionState& session, std::string_view tag);
  // CLUSTER (proposed 1.2): the admin right, then the sink's status or change.
  void handle_cluster(SessionState& session, std::string_view tag);
  void answer_membership(SessionState& session, std::string_view tag, const Status& outcome);
  // membership_changed's and fences_raised's common part: the session that
  // waits for the cluster's answer under `key`, no longer waiting, with its
  // tag (moved into `tag`), in a new turn; nullptr when it ended meanwhile.
  SessionState* cluster_answered(std::uint64_t key, std::string& tag);
  void raise_fences(SessionState& session, std::string_view tag);
  void answer_fences(SessionState& session, std::string_view tag, const Result<std::uint64_t>& outcome);
  // Answers the session's AUTH `tag` with `outcome`; the fifth failure ends it.
  void finish_auth(SessionState& session, std::string_view tag, const auth::TokenVerifier::Outcome& outcome);
  // Hands the completions the table appended to their sessions, then logs
  // the slow grants among them.
  void deliver_completions();
  // The "session ended" line (PeerLogs::sessions): who, why, what it still
  // held and waited for.
  void log_end(const SessionState& session, stats::EndCause cause);
  // A "slow wait" line (PeerLogs::slow_waits) per grant the table kept.
  void log_slow_grants();
  // Holds the completion for the journal if it must wait, then maps it
  // (answers::deliver).
  void deliver(SessionState& session, const Completion& completion);

  // Cluster mode (dispatcher_cluster.cc).
  // Submits request_ (a verb of request_from_protocol's) for the session,
  // opening the session in the log first if it has no id yet; its input
  // is held until the answer. For KICK, `target` is the parsed id.
  void submit_request(SessionState& session);
  // Submits the ACE session's ACQUIRE of session.ace_name (opening it first).
  void submit_ace_acquire(SessionState& session);
  // Submits a Sync for request_ (a read or PING, whose line is line_): its
  // answer is made from the replica once the Sync is applied.
  void submit_sync(SessionState& session);
  // Submits `command` now, or after the session's OpenSession is applied.
  void submit_command(SessionState& session, replication::SessionRequest command);
  // Handles a read's (or PING's) line again, answering it from the replica.
  void answer_synced_read(SessionState& session, std::string_view line);
  // Submits the session's pending SessionRequest (`command`, with its id,
  // origin and next seq filled in here).
  void submit_now(SessionState& session, replication::SessionRequest command);
  // Submits OpenSession for the session (its dialect is known now).
  void open_in_log(SessionState& session);
  void cluster_end_session(SessionState& session, stats::EndCause cause);
  // The answer to a command of `session` (hosted here), its input resumed.
  void write_answer(SessionState& session, const replication::Answer& answer);
  // A hosted session the log ended, with `cause`; `kicker` is the session
  // whose KICK did it (0 if none).
  void ended_in_log(SessionState& session, replication::CloseCause cause, SessionId kicker);
  void opened_in_log(std::uint64_t nonce, const replication::Answer& answer);
  // Proposed 1.2: sessions that outlive their connection, LEADER
  // (dispatcher_resume.cc, both modes and the log's side).
  void resumable(SessionState& session, std::string_view tag);
  void resume(SessionState& session, std::string_view tag);
  // Cluster mode: `session`'s ResumeSession of session `id` from `from_host`
  // (its host on this replica, or replication::kResumeProbe when this
  // replica does not know it) goes to the log; its answer comes to
  // resumed_in_log.
  void submit_resume(SessionState& session, SessionId id, std::string_view secret, replication::ServerId from_host);
  void mine(SessionState& session, std::string_view tag);
  void leader(SessionState& session, std::string_view tag);
  // The log applied `resume` (this server's, or another's that takes a
  // session hosted here).
  void resumed_in_log(const replication::ResumeSession& resume, const replication::Answer& answer);
  // RESUMABLE's answer, `OK <id> <secret>`, the session marked resumable.
  void answer_resumable(SessionState& session, std::string_view tag);
  // Takes session `id` from `old` (another connection of it here): `* ERR
  // KICKED resumed on another connection`, closed, nothing ended in the log.
  // `to`: where it went, for the log line.
  void detach_resumed(SessionState& old, std::string_view to);
  // The session of `old` goes on on another connection (`to`, for the log
  // line): `old` is told `* ERR KICKED resumed on another connection` and
  // closed. A move, not a session end: no end counted (STATS
  // session_ends_*), no "session ended" line.
  void move_off(SessionState& old, std::string_view to);
  // Activity of a session the log does not see otherwise (a line answered
  // here, an ACE keep-alive or heartbeat, a LIST taken): a TouchSession, at
  // most one per tenth of the session timeout, so the log's expiry spares
  // what a single server's idle timeout spares. Nothing in single mode.
  void touch_in_log(SessionState& session);
  // The replica's table time (for the listings' ages): the log time.
  TimePoint view_time() const;
  // What reads read: the table, or the replica's (looked up at each use:
  // the replica's restore() replaces its table).
  const SemaphoreTable& view() const { return replica_ != nullptr ? replica_->table() : *table_; }
  // The journal sequence an answer appended now must wait for: the last
  // record made since the request (or turn) began, 0 when it made none.
  std::uint64_t answer_dependency() const {
    const std::uint64_t sequence = journal_.sequence();
    return sequence > request_sequence_ ? sequence : 0;
  }

  // Reads the clock into now_ and the table's time.
  void read_clock() const {
    now_ = clock_(clock_context_);
    now_read_ = true;
    if (table_ != nullptr) table_->set_time(now_);
  }

  SemaphoreTable* table_;  // single mode's table; null in cluster mode
  const JournalProgress& journal_;
  const ServerConfig& config_;
  ServerCounters& counters_;
  PeerLogs& logs_;
  ClockFunction clock_;
  const void* clock_context_;
  mutable Clock::time_point now_{};  // this turn's time, once read
  mutable bool now_read_ = false;
  Clock::time_point started_{};
  std::optional<Clock::time_point> grants_held_until_;  // the lease wait after a restart
  std::unordered_map<SessionId, SessionState*> sessions_;
  // The same sessions ordered by id, for SESSIONS: a chunk resumes after its
  // cursor in O(log n) and costs O(rows), however many sessions there are
  // and whatever came and went since the last chunk. Kept beside sessions_
  // (not instead of it) so that a completion's lookup stays a hash lookup.
  std::map<SessionId, const SessionState*> sessions_by_id_;
  Completions completions_;
  bool delivering_ = false;
  bool shutting_down_ = false;
  std::uint64_t request_sequence_ = 0;  // journal sequence when the request or turn began
  protocol::Request request_;           // reused for every line: no allocation per request
  auth::TokenVerifier* verifier_ = nullptr;
  LoopPost post_;

  // Cluster mode.
  const replication::StateMachine* replica_ = nullptr;
  CommandSink* sink_ = nullptr;
  replication::ServerId origin_ = 0;
  std::uint64_t next_nonce_ = 0;
  // True while a read's (or PING's) line is handled again after its Sync
  // was applied: handle_request answers it from the replica.
  bool answering_synced_ = false;
  std::string_view line_;  // the line handle_line is handling (submit_sync keeps a copy)
  // Every session begun here and not yet ended, by nonce (AUTH's answer
  // finds its session by it: a session may have no id yet).
  std::unordered_map<std::uint64_t, SessionState*> by_nonce_;
  // OpenSessions submitted and not yet applied, by nonce: the session (null
  // when it ended meanwhile: its CloseSession follows the open, with
  // `cause`) and the request that waits for its id.
  struct Opening {
    SessionState* session = nullptr;
    replication::CloseCause cause = replication::CloseCause::kClosed;
    std::optional<replication::SessionRequest> first;
  };
  std::unordered_map<std::uint64_t, Opening> opening_;
  // Single mode (proposed 1.2): resumable sessions whose connection ended,
  // still open in the table (their permits held, their requests queued)
  // until a RESUME or the session timeout after their last activity.
  struct Detached {
    std::string secret;
    std::string label;
    Clock::time_point last_activity{};
  };
  std::map<SessionId, Detached> detached_;
  std::optional<Clock::time_point> next_detached_expiry() const;
  // Ends the detached sessions whose time ran out (expire()).
  void expire_detached();
  std::string own_address_;
  // A new resume secret: 32 hex digits (128 bits) from the system's random
  // source.
  static std::string make_secret();
  // RESUMEs submitted and not yet applied, by the session they resume: the
  // connection that asked (null once it ended) and the ResumeSession's
  // from_host, which tells its answer from that of an earlier one (a probe
  // sent again) applied later.
  struct Resuming {
    SessionState* session = nullptr;
    replication::ServerId from_host = 0;
    // The secret the client showed, in clear: the log has only its digest,
    // and a RESUMABLE on the session answers this (session.log.secret).
    std::string secret;
  };
  std::unordered_map<SessionId, Resuming> resuming_;
};

}  // namespace netsem::server
