// answers: the one mapping from what the semaphore table decided (a take's
// result, a verb's error, a completion of a queued request, a session's end)
// to what a session reads, for protocol v1 and for ACE: the answer line or
// token, the ACE stage it moves to, and the log lines that go with it (a
// session's end, a slow grant). The single server's Dispatcher calls it with
// the table's results as it makes them; a server on the replicated log calls
// it with the results of an applied entry (replication::EntryResults), so
// both modes answer byte for byte alike.
//
// API: free functions over a SessionState; each appends to session.out and
// tells the session's SessionEvents what the network layer must do
// (completion_added, timer_changed, end). None reads a clock (the caller
// passes the turn's time where one is needed) nor any journal: holding an
// answer for the journal is the single server's business, around the call.
//
// Thread safety: none needed (no state of its own); the sessions and logs
// passed are the event-loop thread's.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/peer_logs.h"
#include "core/session_state.h"
#include "protocol/codec.h"
#include "stats/stats.h"
#include "table/semaphore_table.h"

namespace netsem::server::answers {

// The detail of the LIMIT answer to a grant that found no fence reserved
// (the contract has no code for a server-side I/O failure).
inline constexpr std::string_view kNoFenceDetail =
    "the server cannot reserve fences (its data directory fails to write); retry later";
// An ACE session's label (SESSIONS, HOLDERS, the log) and dialect name.
inline constexpr std::string_view kAceLabel = "ace";
// HELLO's answer before the session id: the protocol version spoken.
inline constexpr std::string_view kHelloVersion = "netsem 1.1 ";

// Appends `tag ERR <code> <message>` for a request of `verb` naming `name`
// (empty when it names none). An empty `detail` is the usual one for the
// code (and the verb: CANCEL's and KICK's NOT_FOUND say what was not found).
// Verbs that name a semaphore add `: <name>` (percent-encoded), except for
// DUPLICATE_TAG, LIMIT and AUTH, which are not about the name.
void append_request_error(std::string& out, std::string_view tag, protocol::Verb verb, std::string_view name,
                          protocol::ErrorCode code, std::string_view detail = {});

// The v1 answer to an ACQUIRE or WAIT (`verb`) of `name` that the table
// decided `result`: `OK <fence>`, `QUEUED <position>` (only with
// session.queued_lines), `TIMEOUT`, or the error.
void append_take(SessionState& session, std::string_view tag, protocol::Verb verb, std::string_view name,
                 const TakeResult& result);

// An ACE `acquire:` that the table decided `result`: granted, the session
// holds (`locked|`); queued, it waits (heartbeats from now on); refused, it
// is logged and the session ends (SessionEvents::end, cause error).
void ace_take(SessionState& session, const TakeResult& result, PeerLogs& logs);

// An ACE `release|` that the table answered `error`: `ok|` when it was
// released, then the session ends (cause quit).
void ace_released(SessionState& session, protocol::ErrorCode error);

// HELLO answered: `OK netsem 1.1 <session id>`; a label (already the
// session's) is logged.
void append_hello(SessionState& session, std::string_view tag, PeerLogs& logs);

// Delivers a completion of one of the session's queued requests: a v1 line
// (`OK <fence>`, `TIMEOUT`, `CANCELLED`, an error after a reload, LIMIT
// without a fence), or for an ACE session `locked|` (its keep-alives due
// from `now` on) or its end; then SessionEvents::completion_added.
void deliver(SessionState& session, const Completion& completion, std::chrono::steady_clock::time_point now);

// Tells a v1 peer why its session ends (`* ERR <code> <message>`; an ACE
// peer is told nothing), then ends it (SessionEvents::end).
void end_with_error(SessionState& session, stats::EndCause cause, protocol::ErrorCode code, std::string_view message);

// The "session ended" line (PeerLogs::sessions): who, why, what it still
// held and waited for (`load`), how long it lasted until `now`.
void log_end(PeerLogs& logs, const SessionState& session, stats::EndCause cause, const SessionLoad& load,
             std::chrono::steady_clock::time_point now);

// A "slow wait" line (PeerLogs::slow_waits) for a grant the table kept;
// `session` is its session if still open here, else null.
void log_slow_grant(PeerLogs& logs, const SlowGrant& grant, const SessionState* session);

}  // namespace netsem::server::answers
