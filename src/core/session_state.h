// SessionState: what the server knows of one session apart from its socket:
// who it is (id, peer, label, dialect), what it asked for (the ACE name and
// its stage, a LIST in progress, its options), and its output, the answers
// the dispatcher appended and the network layer has not yet written.
//
// The dispatcher (dispatcher.h) reads and changes it while it handles the
// session's requests and delivers completions to it; the network layer owns
// it (one per connection), frames what it reads, writes `out` from
// `out_sent` on, and tells the dispatcher when the session begins and ends.
// A test owns it directly and reads `out` as the peer would.
//
// Thread safety: event-loop thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/rights.h"
#include "protocol/ace_codec.h"
#include "protocol/requests.h"
#include "stats/stats.h"
#include "table/semaphore_table.h"

namespace netsem::server {

// What the dispatcher tells the layer that carries a session's bytes; the
// connection implements it, a test records the calls. Called on the event-
// loop thread, possibly while another session's request is handled (a
// completion delivered to this session).
class SessionEvents {
 public:
  virtual ~SessionEvents() = default;
  // A completion was appended to the session's output: write it at the end
  // of the turn. (The answers to the session's own requests are not
  // announced: the caller that handed the request knows.)
  virtual void completion_added() = 0;
  // The dispatcher ended the session (QUIT, an ACE release or refusal, an
  // ACE request that ended without a grant, a fatal framing error): write
  // what its output holds, then close. The network layer calls
  // Dispatcher::end_session, which gives its permits back and counts
  // `cause` (STATS session_ends_*); `reason` is for the log.
  virtual void end(stats::EndCause cause, std::string_view reason) = 0;
  // Dispatcher::idle_timeout or Dispatcher::heartbeat of the session may
  // have changed (an ACE request queued or granted, a LIST began): re-arm
  // the session's timer.
  virtual void timer_changed() = 0;
  // The AUTH the session waited for was answered (SessionState::auth_pending
  // is false again, the answer appended): hand on the requests read behind
  // it, and write. Called from Dispatcher::auth_checked, outside a read.
  virtual void input_resumable() {}
};

// The stage of an ACE session: one `acquire:` per connection.
enum class AceStage : std::uint8_t { kAwaitAcquire, kQueued, kHolding };

struct SessionState {
  // A listing in progress (LIST, and protocol 1.1's HOLDERS, WAITERS and
  // SESSIONS): where to resume. Its memory is bounded by the longest name,
  // whatever the size of the table or the number of sessions.
  struct ListStream {
    enum class Kind : std::uint8_t { kList, kHolders, kWaiters, kSessions };
    Kind kind = Kind::kList;
    std::string tag;
    std::string prefix;  // LIST: the prefix; HOLDERS, WAITERS: the name
    std::string last;    // LIST: the last name produced ("" before the first)
    // HOLDERS, WAITERS: the order of the last row produced; SESSIONS: the
    // last session id (0 before the first).
    std::uint64_t after = 0;
    std::uint64_t count = 0;
  };
  // The answer that starts at `offset` in `out` (and all after it) may be
  // sent only once the journal has written record `sequence`.
  struct AnswerHold {
    std::size_t offset = 0;
    std::uint64_t sequence = 0;
  };

  SessionState(SessionId session_id, std::string session_peer, SessionEvents& session_events)
      : id(session_id), peer(std::move(session_peer)), events(&session_events) {}

  // Bytes of `out` not yet written.
  std::size_t unwritten() const { return out.size() - out_sent; }

  // The session's id. A single server's network layer gives it at
  // construction. On the replicated log (the Dispatcher's cluster mode) it
  // is 0 until the session's OpenSession is applied; the dispatcher then
  // sets the id the log assigned (log.opened), and nothing else changes it.
  SessionId id;
  const std::string peer;  // "address:port", "[v6]:port", for logs and SESSIONS
  SessionEvents* const events;
  // The peer's address, IPv6 or IPv4-mapped (as AllowList::allows takes
  // it), for the admin right (admin_networks). All zeros when unknown, which
  // no network holds.
  std::array<std::uint8_t, 16> address{};
  std::string label;  // HELLO label, decoded (protocol 1.1: a valid name)
  protocol::Dialect dialect = protocol::Dialect::kUndecided;
  // A TLS session (the tls_port listener): protocol v1 from its first byte,
  // shown as dialect `v1+tls` (protocol 1.1). Set before begin_session.
  bool tls = false;          // its tls_subject: below, with the rights
  bool open = false;         // the table knows this session (between begin_session and end_session)
  bool quit = false;         // QUIT seen: the rest of the batch is ignored
  bool requested = false;    // a v1 request was handled (RESUME must be the first)
  bool queued_lines = true;  // a queued request is answered QUEUED (protocol 1.1: OPTION queued off)
  AceStage ace_stage = AceStage::kAwaitAcquire;
  std::string ace_name;  // the one name an ACE session asks for
  std::optional<ListStream> list;

  std::string out;                // answers not yet written
  std::size_t out_sent = 0;       // how much of `out` the network layer wrote
  std::vector<AnswerHold> holds;  // answers waiting for the journal, by offset
  // The last request (or LIST line taken, or ACE token): idle timeouts count from it.
  std::chrono::steady_clock::time_point last_activity{};
  std::chrono::steady_clock::time_point began{};  // Dispatcher::begin_session (SESSIONS age_ms)
  // A RESUME on another connection took the session (Dispatcher::move_off):
  // this connection's end is no session end (not counted, no end line).
  bool moved = false;

  // Authentication (docs/security.md), the dispatcher's: the rights AUTH
  // (or ace_rights) gave, none before; while no token is configured the
  // server's default rights apply instead. A reload re-derives them from the
  // token named here (its hash must not have changed).
  std::optional<auth::Rights> rights;
  // The verified client certificate's subject (RFC 2253 form), set by the
  // network half of a TLS session; "" without one. Mapped through
  // [tls_subjects] at the session's first request that needs a right.
  std::string tls_subject;
  std::string token_name;
  std::string token_hash;
  std::uint8_t auth_failures = 0;
  // An AUTH is checked off the loop: the session's later requests wait, in
  // the network layer, until its answer (input_held).
  bool auth_pending = false;
  std::string auth_tag;
  // A CLUSTER ADD or REMOVE (cluster mode) waits for the configuration
  // change: the session's later requests wait too (input_held).
  bool cluster_pending = false;
  std::string cluster_tag;

  // On the replicated log (the Dispatcher's cluster mode, its own): where
  // the session stands in the log, and the one command it has in flight.
  // (`secret` and `resumable` serve a single server's RESUMABLE too.)
  struct LogState {
    std::uint64_t nonce = 0;  // matches its OpenSession's result to it (unique in this run)
    bool opening = false;     // its OpenSession is submitted, not yet applied
    bool opened = false;      // applied: `id` is the log's
    bool closed = false;      // the log ended it (or its own CloseSession is submitted)
    // A command submitted (or waiting for the session's id) whose answer
    // is not yet written: the session's later requests wait (input_held).
    bool pending = false;
    std::uint64_t seq = 0;  // the last seq given to one of its requests
    // What the answer to the pending command needs: its verb (an ACE
    // acquire is kAcquire, an ACE release kQuit), tag and name.
    protocol::Verb verb = protocol::Verb::kPing;
    std::string tag;
    std::string name;
    std::uint64_t pending_seq = 0;  // the pending SessionRequest's seq (0 before it has one)
    // The resume secret made here (its OpenSession carried only the
    // digest), or the one its RESUME showed: what RESUMABLE answers. The
    // log never holds it.
    std::string secret;
    // Proposed 1.2: RESUMABLE was answered, or the session came by RESUME.
    // The end of its connection (but QUIT or a kick) leaves the session in
    // the log, for a RESUME, until the log's session expiry ends it.
    bool resumable = false;
    // RESUME: the session it asked for, while its ResumeSession is in flight.
    SessionId resuming = 0;
    // A read or PING waits for its Sync (replication::RequestVerb::kSync) to
    // be applied: its whole line, answered from the replica then.
    std::string read_line;
    // When its last request or TouchSession was submitted: activity the
    // log does not see (a read, a PING, an ACE keep-alive, a LIST taken)
    // is told it at most once per tenth of the session timeout.
    std::chrono::steady_clock::time_point touched{};
  };
  LogState log;

  // Whether the network layer must hand the dispatcher no more requests for
  // now: a LIST streams, an AUTH is being checked, a CLUSTER change runs, or (cluster mode) the
  // answer to the session's command has not yet come from the log.
  bool input_held() const { return list.has_value() || auth_pending || cluster_pending || log.pending; }
};

// The session's dialect as SESSIONS, the HTTP API and the log show it:
// `ace`, `v1`, or `v1+tls` (protocol 1.1); a v1 connection that has sent
// nothing yet shows as `v1`.
inline std::string_view dialect_name(const SessionState& session) {
  if (session.dialect == protocol::Dialect::kAce) return "ace";
  return session.tls ? "v1+tls" : "v1";
}

}  // namespace netsem::server
