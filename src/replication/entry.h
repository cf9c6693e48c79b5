// The entries of netsem's replicated log: what the leader proposes and every
// replica applies (StateMachine, state_machine.h). An entry is a batch of
// commands with the leader's log time; each command carries everything its
// application needs (the session it belongs to, the request as the codec
// parsed it, the cause of a close), and nothing is read from a clock while
// applying it. Pure values and pure functions over bytes: no socket, no
// consensus library.
//
// API: the leader's network layer collects commands (request_from_protocol
// turns a parsed v1 line into a SessionRequest; reads such as GET or LIST
// are not commands), puts them in an Entry with its log time and proposes
// encode_entry(entry); every replica's StateMachine::apply decodes it with
// decode_entry, which checks the frame (magic, version, length, crc32) and
// every field by the rules the table requires (check_command), so an entry
// that decodes can be applied whole.
//
// The byte layout is in docs/replication.md ("The state machine").
//
// Thread safety: plain values and reentrant functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "netsem/status.h"
#include "protocol/requests.h"
#include "table/semaphore_table.h"

namespace netsem::replication {

using server::SessionId;

inline constexpr std::string_view kEntryMagic = "NSRE";
inline constexpr std::uint8_t kEntryVersion = 1;
// Bounds of the strings an entry carries (a name's and a tag's are the
// protocol's: protocol::kMaxNameBytes, protocol::kMaxTagBytes).
inline constexpr std::size_t kMaxPeerBytes = 256;
inline constexpr std::size_t kMaxDialectBytes = 16;
// Log times and the session timeout are milliseconds in [0, kMaxLogTimeMs]
// (about 139 years: far inside the table's nanosecond clock).
inline constexpr std::int64_t kMaxLogTimeMs = std::int64_t{1} << 42;

// Why a session ended (the leader's close, or the state machine's own).
enum class CloseCause : std::uint8_t {
  kClosed = 1,    // its connection ended, and the leader gave up waiting for a resume
  kQuit = 2,      // QUIT, or an ACE release
  kIdle = 3,      // silent past the session timeout (applied by AdvanceTime)
  kKicked = 4,    // KICK of another session, or the administrator
  kError = 5,     // a protocol error ended it
  kShutdown = 6,  // the cluster is stopping
};
// "closed", "quit", "idle", "kicked", "error", "shutdown".
std::string_view close_cause_name(CloseCause cause);

// The verbs that change state, and so go through the log. Numbered for the
// wire: never renumber.
enum class RequestVerb : std::uint8_t {
  kAcquire = 1,
  kWait = 2,
  kRelease = 3,
  kPost = 4,
  kCancel = 5,
  kCreate = 6,
  kDelete = 7,
  kKick = 8,
  kHello = 9,  // its label (name), if any, becomes the session's
};

// A new session; the state machine assigns its id (the answer's number).
struct OpenSession {
  std::string label;    // empty, or a valid name (protocol 1.1's HELLO label)
  std::string peer;     // the client's address as the accepting server saw it
  std::string dialect;  // "v1", "v1+tls", "ace" (shown by SESSIONS)
  friend bool operator==(const OpenSession&, const OpenSession&) = default;
};

// One request of a session, with the fields its verb uses (as
// protocol::Request has them); it counts as the session's activity.
struct SessionRequest {
  SessionId session = 0;
  RequestVerb verb = RequestVerb::kAcquire;
  std::string tag;
  std::string name;              // decoded: ACQUIRE WAIT RELEASE POST CREATE DELETE; HELLO's label or empty
  std::int64_t count = 1;        // ACQUIRE WAIT RELEASE POST: 1 .. 2^31-1
  std::int64_t timeout_ms = -1;  // ACQUIRE WAIT: -1 forever, 0 try, > 0
  std::int64_t value = 0;        // CREATE: 0 <= value <= max
  std::int64_t max = 0;          // CREATE: 1 .. 2^31-1
  bool exclusive = false;        // CREATE ... EXCL
  std::string pending_tag;       // CANCEL
  SessionId target = 0;          // KICK (>= 1)
  friend bool operator==(const SessionRequest&, const SessionRequest&) = default;
};

// The session ends: its permits go back, its queued requests are dropped.
struct CloseSession {
  SessionId session = 0;
  CloseCause cause = CloseCause::kClosed;
  friend bool operator==(const CloseSession&, const CloseSession&) = default;
};

// Activity of a session that changes nothing else (a PING, an ACE `wait|`).
struct TouchSession {
  SessionId session = 0;
  friend bool operator==(const TouchSession&, const TouchSession&) = default;
};

// Every session's last activity becomes the entry's time: what a new leader
// proposes first, so that no session expires for the silence of an election.
struct TouchAll {
  friend bool operator==(const TouchAll&, const TouchAll&) = default;
};

// Time passes: queued requests whose deadline is at or before the entry's
// time time out, then sessions silent for the session timeout end (kIdle),
// in id order.
struct AdvanceTime {
  friend bool operator==(const AdvanceTime&, const AdvanceTime&) = default;
};

// The defined semaphores' limits (SemaphoreTable::configure_defined) and the
// session timeout (0: sessions never expire for silence).
struct Reconfigure {
  std::vector<std::pair<std::string, std::int64_t>> limits;  // valid names, limits 1 .. 2^31-1
  std::int64_t session_timeout_ms = 0;                       // 0 .. kMaxLogTimeMs
  friend bool operator==(const Reconfigure&, const Reconfigure&) = default;
};

using Command =
    std::variant<OpenSession, SessionRequest, CloseSession, TouchSession, TouchAll, AdvanceTime, Reconfigure>;

struct Entry {
  // The leader's log time in milliseconds on the cluster clock, 0 ..
  // kMaxLogTimeMs; an entry whose time is below the state's is applied at
  // the state's.
  std::int64_t time_ms = 0;
  std::vector<Command> commands;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// OK, or kInvalidArgument naming the field that breaks the rules above (the
// rules decode_entry applies, so a leader checks a command before proposing
// it).
Status check_command(const Command& command);

// The entry's bytes. REQUIRES: check_command(c) is OK for every command.
std::string encode_entry(const Entry& entry);

// The entry in `bytes`; kCorruption, naming what is wrong, for a frame that
// does not check (magic, version, length, crc32), a command of an unknown
// type, a field out of its bounds (a time outside 0 .. kMaxLogTimeMs among
// them), or bytes left over.
// encode_entry(decode_entry(b)) == b for every b it accepts.
Result<Entry> decode_entry(std::string_view bytes);

// The command for a parsed v1 request of `session`, for the verbs in
// RequestVerb; false for the others (reads and session-local verbs: GET,
// LIST, STATS, PING, QUIT, OPTION, HOLDERS, WAITERS, SESSIONS, AUTH), and
// for a KICK whose id does not parse.
bool request_from_protocol(SessionId session, const protocol::Request& request, SessionRequest& out);

}  // namespace netsem::replication
