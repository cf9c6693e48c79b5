// The entries of netsem's replicated log: what the leader proposes and every
// replica applies (StateMachine, state_machine.h). An entry is a batch of
// commands with the leader's log time; each command carries everything its
// application needs (the session it belongs to, the request as the codec
// parsed it, the cause of a close), and nothing is read from a clock while
// applying it. Pure values and pure functions over bytes: no socket, no
// consensus library.
//
// API: the server hosting a session makes its commands (request_from_protocol
// turns a parsed v1 line into a SessionRequest, then the caller fills in
// origin and seq; reads such as GET or LIST are not commands), the leader
// puts them in an Entry with its log time and proposes encode_entry(entry);
// every replica's StateMachine::apply decodes it with
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
// Version 2 added the session's host and sequence (origin, nonce, secret,
// seq), ResumeSession and the members; version 1 bytes are refused.
// Version 3 replaced the resume secret of OpenSession and ResumeSession by
// its SHA-256 digest (the log, the snapshots and libraft's transport carry
// no secret in clear). Version 2 bytes are still read: their secret is
// hashed as they are decoded. Entries are written as version 3 only.
inline constexpr std::uint8_t kEntryVersion = 3;
inline constexpr std::uint8_t kOldestEntryVersion = 2;
// Bounds of the strings an entry carries (a name's and a tag's are the
// protocol's: protocol::kMaxNameBytes, protocol::kMaxTagBytes). A member's
// client address is at most kMaxPeerBytes too.
inline constexpr std::size_t kMaxPeerBytes = 256;
inline constexpr std::size_t kMaxDialectBytes = 16;
// A session's resume secret: kMinSecretBytes .. kMaxSecretBytes characters
// of [0-9a-f], made by its first host from a random source.
inline constexpr std::size_t kMinSecretBytes = 16;
inline constexpr std::size_t kMaxSecretBytes = 64;
// What the log holds of it: SHA-256(secret), 32 raw bytes (secret_digest).
inline constexpr std::size_t kSecretDigestBytes = 32;

// Servers are numbered 1 and up (the Raft ids); a command's `origin` is the
// id of the server that proposes it for a session it hosts.
using ServerId = std::uint64_t;
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
  // A read or PING's place in the log: changes nothing but the session's
  // activity, answers OK. Its host answers the read (or PONG) once it has
  // applied it, so the answer reflects every entry committed before the
  // request arrived (a follower's replica may lag), and a PONG proves the
  // log renewed the session (a server cut off from the majority answers no
  // PING, so its clients' leases run out as the majority expires them).
  kSync = 10,
};

// A new session, hosted by `origin`; the state machine assigns its id (the
// answer's number). The origin finds its own OpenSession among an entry's
// commands by (origin, nonce) and so learns which connection the id is for.
struct OpenSession {
  std::string label;        // empty, or a valid name (protocol 1.1's HELLO label)
  std::string peer;         // the client's address as the accepting server saw it
  std::string dialect;      // "v1", "v1+tls", "ace" (shown by SESSIONS)
  ServerId origin = 0;      // >= 1: the proposing server, the session's host
  std::uint64_t nonce = 0;  // unique among the OpenSessions of one run of the origin
  // secret_digest(the session's resume secret): what a RESUME's secret must
  // hash to. The secret itself stays on the host (and with the client).
  std::string secret_digest;
  friend bool operator==(const OpenSession&, const OpenSession&) = default;
};

// One request of a session, with the fields its verb uses (as
// protocol::Request has them), proposed by its host (`origin`) with the
// next of the session's sequence numbers. Applied: a session hosted by
// another server answers kNotHost, a seq not above the session's last one
// answers kDuplicate, neither changing anything; otherwise the seq becomes
// the last one and the request counts as the session's activity.
struct SessionRequest {
  SessionId session = 0;
  ServerId origin = 0;    // >= 1
  std::uint64_t seq = 0;  // >= 1, counted by the host per session
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
// Only its host may end it (kNotHost otherwise: an old host's late close
// does not end a session resumed elsewhere).
struct CloseSession {
  SessionId session = 0;
  ServerId origin = 0;  // >= 1
  CloseCause cause = CloseCause::kClosed;
  friend bool operator==(const CloseSession&, const CloseSession&) = default;
};

// Activity of a session that changes nothing else (a PING, an ACE `wait|`);
// from its host only (kNotHost otherwise).
struct TouchSession {
  SessionId session = 0;
  ServerId origin = 0;  // >= 1
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

// A client reconnecting to another server (protocol 1.2's RESUME): with the
// session's secret, the session moves from `from_host` (its host on the
// proposer's replica) to `origin` (commands from its former host are
// answered kNotHost from then on) and is touched; the answer is kOk with the
// session's last seq, from which the new host counts on. A wrong secret is
// kError kDenied; a session whose host is no longer `from_host` (another
// resume came first: a proposal sent again must not take the session back
// from the newer connection) is kNotHost with its host. Both change nothing.
//
// A probe is a ResumeSession whose from_host is kResumeProbe, a host no
// session ever has: it moves nothing, and answers whether the session lives
// (kNotHost with its host), ended (kNoSession) or has another secret
// (kDenied). A server whose replica does not know the session (it lags, or
// has just restarted) submits one before it answers a RESUME: once the
// probe is applied there, its replica has every entry before it.
struct ResumeSession {
  SessionId session = 0;
  ServerId origin = 0;        // >= 1, never kResumeProbe
  std::string secret_digest;  // secret_digest(the secret the client showed)
  ServerId from_host = 0;     // >= 1; kResumeProbe for a probe
  friend bool operator==(const ResumeSession&, const ResumeSession&) = default;
};
// No server has this id (a server's id is 1 .. 2^53, src/config; an
// OpenSession's or ResumeSession's origin that is this is refused), so no
// session is ever hosted there. Not 0: replicas of before the probe (the
// same entry version, 2) refuse from_host 0 as invalid and stop, while they
// apply this value as any resume that finds another host, changing nothing
// (docs/replication.md, "Entries").
inline constexpr ServerId kResumeProbe = ~ServerId{0};

// The cluster's members and where their clients connect: the leader
// proposes them at bootstrap and on `netsem cluster add` (SetMember
// replaces a member's address) and `remove` (RemoveMember of an id that is
// not a member changes nothing). Both answer kOk.
struct SetMember {
  ServerId id = 0;             // >= 1
  std::string client_address;  // "host:port", at most kMaxPeerBytes, no space or control character
  friend bool operator==(const SetMember&, const SetMember&) = default;
};
struct RemoveMember {
  ServerId id = 0;  // >= 1
  friend bool operator==(const RemoveMember&, const RemoveMember&) = default;
};

// The cluster's fences jump: the table's last fence grows by `by`, so every
// fence handed out after it is above every one handed out before it plus
// `by` (`netsem cluster raise-fences`, after a restore from a backup copy
// whose last fence is behind the fences already handed out). Answers
// kValue with the new last fence; kError LIMIT, changing nothing, when the
// new last fence would pass kMaxRaisedFence. Proposed by the leader for an
// admin's CLUSTER FENCES on it: `server` (its id) and `nonce` (unique among
// its raises) let it find the answer among the applied commands. A type of
// its own (11): a replica of a build that does not know it refuses the
// entry and stops, never skips it (docs/replication.md, "Entries").
struct RaiseFences {
  std::uint64_t by = 0;  // 1 .. kMaxFenceRaise
  ServerId server = 0;   // >= 1
  std::uint64_t nonce = 0;
  friend bool operator==(const RaiseFences&, const RaiseFences&) = default;
};
// 2^53, as CLUSTER FENCES <n> allows.
inline constexpr std::uint64_t kMaxFenceRaise = std::uint64_t{1} << 53;
// A raise never takes the last fence past this (2^62): fences stay far from
// 2^63 and 2^64 whatever clients read them as.
inline constexpr std::uint64_t kMaxRaisedFence = std::uint64_t{1} << 62;

using Command = std::variant<OpenSession, SessionRequest, CloseSession, TouchSession, TouchAll, AdvanceTime,
                             Reconfigure, ResumeSession, SetMember, RemoveMember, RaiseFences>;

struct Entry {
  // The leader's log time in milliseconds on the cluster clock, 0 ..
  // kMaxLogTimeMs; an entry whose time is below the state's is applied at
  // the state's.
  std::int64_t time_ms = 0;
  std::vector<Command> commands;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// The command's `origin` field, for the commands that have one (the
// server whose client waits for its answer); nullptr, or 0, for the others.
ServerId* origin_of(Command& command);
ServerId origin_of(const Command& command);

// OK, or kInvalidArgument naming the field that breaks the rules above (the
// rules decode_entry applies, so a leader checks a command before proposing
// it).
Status check_command(const Command& command);

// The entry's bytes. REQUIRES: check_command(c) is OK for every command.
std::string encode_entry(const Entry& entry);

// One command's bytes as an entry holds them (type, length, fields), without
// the entry's frame: equal for equal commands and different for different
// ones, as a key (cluster::ClusterNode matches applied commands to its
// pending ones by them) that costs no checksum. REQUIRES: check_command(c).
std::string encode_command(const Command& command);

// The entry in `bytes`; kCorruption, naming what is wrong, for a frame that
// does not check (magic, version, length, crc32), a command of an unknown
// type, a field out of its bounds (a time outside 0 .. kMaxLogTimeMs among
// them), or bytes left over.
// encode_entry(decode_entry(b)) == b for every b of the current version it
// accepts (a version 2 entry is re-encoded as version 3, its secrets hashed).
Result<Entry> decode_entry(std::string_view bytes);

// Whether `secret` is a valid resume secret (length and charset above).
bool is_valid_secret(std::string_view secret);
// SHA-256(secret): kSecretDigestBytes raw bytes.
std::string secret_digest(std::string_view secret);
// Whether the two digests are equal, compared in constant time
// (CRYPTO_memcmp); false unless both are kSecretDigestBytes long.
bool same_secret_digest(std::string_view a, std::string_view b);
// Whether `address` is a valid member client address ("host:port": a
// non-empty host, a port 1 .. 65535, at most kMaxPeerBytes, no space or
// control character).
bool is_valid_member_address(std::string_view address);

// The command for a parsed v1 request of `session`, for the verbs in
// RequestVerb; false for the others (reads and session-local verbs: GET,
// LIST, STATS, PING, QUIT, OPTION, HOLDERS, WAITERS, SESSIONS, AUTH), and
// for a KICK whose id does not parse. `out.origin` and `out.seq` are left 0:
// the host fills them in before proposing (check_command refuses 0).
bool request_from_protocol(SessionId session, const protocol::Request& request, SessionRequest& out);

}  // namespace netsem::replication
