// The requests of protocol v1 and 1.1 (and LEASE, proposed for 1.2), both
// ways: parse_request turns a line into a Request (the server's side), the
// encode_* functions write a request line from values (the side of
// libnetsem, the CLI, the benchmark and the tests). No request line is
// formatted anywhere else.
//
// API: the server feeds each framed line (line_framer.h) to parse_request,
// which fills a Request the session reuses for every line, so the steady
// state allocates nothing. A client appends `<tag> <VERB> <fields>\n` to its
// output buffer with one encode_* call per request; names are percent-encoded
// on the way (names.h), numbers written in decimal, and optional trailing
// fields left out when they hold their defaults, so the line is the shortest
// that means the values given. parse_request(encode_x(values)) gives back the
// values: tests/protocol/requests_test.cc checks it for every verb.
//
// To add a verb: a Verb value, its row in kVerbs (requests.cc, with its
// argument counts), its arguments in parse_arguments, an encode_* function
// here, a round-trip case in requests_test.cc; then the dispatcher and
// docs/protocol.md.
//
// Pure functions and plain values: safe from any thread, one object per user.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/error_code.h"
#include "protocol/fields.h"

namespace netsem::protocol {

enum class Verb : std::uint8_t {
  kHello,
  kAcquire,
  kWait,
  kRelease,
  kPost,
  kCancel,
  kCreate,
  kDelete,
  kGet,
  kList,
  kStats,
  kPing,
  kQuit,
  // Version 1.1.
  kOption,
  kHolders,
  kWaiters,
  kSessions,
  kKick,
  kAuth,
  // Proposed for version 1.2 (docs/protocol.md): the session timeout for
  // every session, whatever its rights.
  kLease,
  // Proposed for version 1.2: sessions that outlive their connection
  // (RESUMABLE, RESUME <id> <secret>, MINE) and the cluster's leader.
  kResumable,
  kResume,
  kMine,
  kLeader,
  // Proposed for 1.2: a cluster's membership, for admins (CLUSTER STATUS,
  // CLUSTER ADD <id> <raft-address> <client-address>, CLUSTER REMOVE <id>),
  // and its fences (CLUSTER FENCES <n>).
  kCluster,
};

// The wire spelling of a verb ("ACQUIRE", ...).
std::string_view verb_name(Verb verb);

// The options OPTION sets (1.1).
enum class SessionOption : std::uint8_t {
  kQueued,  // `OPTION queued <on|off>`: whether a waiting request is told QUEUED
};

// What CLUSTER asks (proposed 1.2).
enum class ClusterAction : std::uint8_t { kStatus, kAdd, kRemove, kFences };

// One parsed request. Views point into the line passed to parse_request (and
// are valid while it is); `name` is decoded into storage the object owns.
struct Request {
  std::string_view tag;
  Verb verb = Verb::kPing;
  // Decoded: the name of ACQUIRE WAIT RELEASE POST CREATE DELETE GET HOLDERS
  // WAITERS, the LIST prefix, the HELLO label (1.1: checked like a name).
  std::string name;
  bool has_name = false;                          // LIST, HELLO: whether a prefix, a label was given
  std::int64_t count = 1;                         // ACQUIRE WAIT RELEASE POST
  std::int64_t timeout_ms = -1;                   // ACQUIRE WAIT: -1 forever, 0 try
  std::int64_t value = 0;                         // CREATE
  std::int64_t max = 0;                           // CREATE (defaults to value)
  bool exclusive = false;                         // CREATE ... EXCL
  std::int64_t version = 0;                       // HELLO
  std::string_view text;                          // PING payload, HELLO label as sent, AUTH token (raw bytes)
  bool has_text = false;                          // whether PING/HELLO carried the optional field
  std::string_view pending_tag;                   // CANCEL
  SessionOption option = SessionOption::kQueued;  // OPTION
  bool option_on = false;                         // OPTION: on or off
  // RESUME: the secret as sent (16 to 64 of [0-9a-f], checked by the parser).
  std::string_view secret;
  // KICK: the id as sent; RESUME: the id, checked by the parser. The dispatcher checks the admin right before the
  // id (the contract), so the parser takes any field; parse_session_id reads it.
  std::string_view session_id;
  // CLUSTER: the action; ADD and REMOVE the member's id (1..kMaxServerId);
  // ADD its Raft and client addresses as sent (the server checks them);
  // FENCES how much to raise the fences by (1..kMaxFenceRaise).
  ClusterAction cluster_action = ClusterAction::kStatus;
  std::uint64_t member_id = 0;
  std::uint64_t fences_by = 0;
  std::string_view raft_address;
  std::string_view client_address;
};

// Why a line was refused. `tag` is empty when the line had no valid tag: the
// answer then starts with `*`.
struct ParseError {
  ErrorCode code = ErrorCode::kNone;
  std::string_view tag;
  std::string message;
};

enum class ParseStatus : std::uint8_t { kRequest, kEmpty, kError };

// Parses one line (without terminator). kEmpty for an empty line (ignored by
// the server); kError fills `error` following the contract: missing required
// field or extra field or empty field -> BAD_REQUEST; unknown verb ->
// UNKNOWN_VERB; a number that does not parse or is out of range -> BAD_ARG;
// a bad name -> BAD_NAME; an invalid tag -> BAD_REQUEST with an empty tag;
// an unknown OPTION or value -> BAD_ARG; a HELLO label that does not decode
// to a valid name -> BAD_ARG.
// Numbers are plain decimal ASCII (an optional leading '-' only where -1 is
// allowed, and never on zero: "-0" is BAD_ARG); no '+', no spaces; leading
// zeros are accepted ("007", "-01").
ParseStatus parse_request(std::string_view line, Request& request, ParseError& error);

// The highest server id: a cluster's servers are 1..2^53 (a [cluster] id,
// a server.<id> line, CLUSTER ADD and REMOVE: each its first check), the
// largest integer a JSON reader that keeps numbers as doubles reads exactly
// (CLUSTER STATUS's ids). Never 2^64-1, the resume probe's host in the log
// (replication::kResumeProbe).
inline constexpr std::uint64_t kMaxServerId = std::uint64_t{1} << 53;
// CLUSTER FENCES <n>: n is 1..2^53 (replication::kMaxFenceRaise).
inline constexpr std::uint64_t kMaxFenceRaise = std::uint64_t{1} << 53;

// A session id as KICK carries it and HELLO's answer gives it: a decimal
// number of 1 to 2^64 - 1; false otherwise.
bool parse_session_id(std::string_view text, std::uint64_t& id);

// --- Encoders (the client's side) ------------------------------------------
// Each appends one whole request line ending in "\n" to `out`, growing it and
// allocating nothing else.
// REQUIRES (all): is_valid_tag(tag). Counts are 1..kMaxCount, a timeout is
// -1 or more: a caller checks the values it was given before it encodes them
// (a bad one would draw BAD_ARG, not a crash; debug builds assert).
// Names go through append_request_name (names.h): any name can be sent, and
// the server answers BAD_NAME for one the contract refuses.

// "HELLO 1 [label]"; the label is percent-encoded like a name (1.1 decodes
// it so), and left out when empty.
void encode_hello(std::string& out, std::string_view tag, std::string_view label = {});
// "ACQUIRE <name> [count] [timeout_ms]"; count 1 and timeout -1 (forever)
// are the defaults and are left out when they can be.
void encode_acquire(std::string& out, std::string_view tag, std::string_view name, std::int64_t count = 1,
                    std::int64_t timeout_ms = -1);
void encode_wait(std::string& out, std::string_view tag, std::string_view name, std::int64_t count = 1,
                 std::int64_t timeout_ms = -1);
void encode_release(std::string& out, std::string_view tag, std::string_view name, std::int64_t count = 1);
void encode_post(std::string& out, std::string_view tag, std::string_view name, std::int64_t count = 1);
// REQUIRES: is_valid_tag(pending_tag).
void encode_cancel(std::string& out, std::string_view tag, std::string_view pending_tag);
// "CREATE <name> <value> [max] [EXCL]"; max is left out when it equals value.
// REQUIRES: 0 <= value <= max, 1 <= max <= kMaxCount.
void encode_create(std::string& out, std::string_view tag, std::string_view name, std::int64_t value, std::int64_t max,
                   bool exclusive = false);
void encode_delete(std::string& out, std::string_view tag, std::string_view name);
// "AUTH <token>" (1.1). REQUIRES: the token is one field (auth::check_token
// in the server: visible ASCII, no space); it is sent as is.
void encode_auth(std::string& out, std::string_view tag, std::string_view token);
void encode_get(std::string& out, std::string_view tag, std::string_view name);
// "LIST [prefix]"; no prefix lists every name.
void encode_list(std::string& out, std::string_view tag, std::optional<std::string_view> prefix = std::nullopt);
void encode_stats(std::string& out, std::string_view tag);
// "PING [payload]"; the payload travels raw, so it must be one field.
// REQUIRES: is_valid_ping_payload(payload).
void encode_ping(std::string& out, std::string_view tag, std::string_view payload = {});
void encode_quit(std::string& out, std::string_view tag);
// 1.1: "OPTION queued on|off".
void encode_option(std::string& out, std::string_view tag, SessionOption option, bool on);
void encode_holders(std::string& out, std::string_view tag, std::string_view name);
void encode_waiters(std::string& out, std::string_view tag, std::string_view name);
void encode_sessions(std::string& out, std::string_view tag);
void encode_kick(std::string& out, std::string_view tag, std::uint64_t session_id);
// "CLUSTER STATUS", "CLUSTER ADD <id> <raft-address> <client-address>",
// "CLUSTER REMOVE <id>", "CLUSTER FENCES <n>" (proposed 1.2). REQUIRES: the addresses are one
// field each (no space).
void encode_cluster_status(std::string& out, std::string_view tag);
void encode_cluster_add(std::string& out, std::string_view tag, std::uint64_t id, std::string_view raft_address,
                        std::string_view client_address);
void encode_cluster_remove(std::string& out, std::string_view tag, std::uint64_t id);
void encode_cluster_fences(std::string& out, std::string_view tag, std::uint64_t by);
// Proposed 1.2: "LEASE" (answered `OK <session_timeout_ms>`; a 1.0 or 1.1
// server answers UNKNOWN_VERB).
void encode_lease(std::string& out, std::string_view tag);
// Proposed 1.2: "RESUMABLE", "RESUME <id> <secret>", "MINE", "LEADER".
// REQUIRES (RESUME): session_id >= 1, the secret 16 to 64 of [0-9a-f].
void encode_resumable(std::string& out, std::string_view tag);
void encode_resume(std::string& out, std::string_view tag, std::uint64_t session_id, std::string_view secret);
void encode_mine(std::string& out, std::string_view tag);
void encode_leader(std::string& out, std::string_view tag);
// Whether `secret` has the shape of a resume secret: 16 to 64 characters of
// [0-9a-f] (netsemd makes 32).
bool is_valid_resume_secret(std::string_view secret);

// Whether `payload` can travel as PING's field and come back byte for byte:
// at most kMaxPingPayloadBytes, no space, "\r", "\n" or NUL. Empty is valid
// (no field is sent).
inline constexpr std::size_t kMaxPingPayloadBytes = 4000;
bool is_valid_ping_payload(std::string_view payload);

}  // namespace netsem::protocol
