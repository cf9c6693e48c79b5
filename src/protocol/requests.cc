// The requests (requests.h): the parser the server runs on every line, and
// the encoders every client uses. Names are decoded and checked by names.cc;
// what a request means is decided by the server. The parser writes into a
// Request the session reuses, so the steady state allocates nothing; the
// encoders only grow the caller's buffer.
#include "protocol/requests.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <limits>

#include "protocol/names.h"

namespace netsem::protocol {

namespace {

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

struct VerbInfo {
  std::string_view word;  // upper case
  Verb verb;
  std::uint8_t min_args;
  std::uint8_t max_args;
};

// The most frequent verbs first: the table is searched in order.
constexpr std::array<VerbInfo, 25> kVerbs = {{
    {"ACQUIRE", Verb::kAcquire, 1, 3}, {"RELEASE", Verb::kRelease, 1, 2},   {"WAIT", Verb::kWait, 1, 3},
    {"POST", Verb::kPost, 1, 2},       {"PING", Verb::kPing, 0, 1},         {"HELLO", Verb::kHello, 1, 2},
    {"CANCEL", Verb::kCancel, 1, 1},   {"CREATE", Verb::kCreate, 2, 4},     {"DELETE", Verb::kDelete, 1, 1},
    {"GET", Verb::kGet, 1, 1},         {"LIST", Verb::kList, 0, 1},         {"STATS", Verb::kStats, 0, 0},
    {"QUIT", Verb::kQuit, 0, 0},       {"OPTION", Verb::kOption, 2, 2},     {"HOLDERS", Verb::kHolders, 1, 1},
    {"WAITERS", Verb::kWaiters, 1, 1}, {"SESSIONS", Verb::kSessions, 0, 0}, {"KICK", Verb::kKick, 1, 1},
    {"AUTH", Verb::kAuth, 1, 1},       {"LEASE", Verb::kLease, 0, 0},       {"RESUMABLE", Verb::kResumable, 0, 0},
    {"RESUME", Verb::kResume, 2, 2},   {"MINE", Verb::kMine, 0, 0},         {"LEADER", Verb::kLeader, 0, 0},
    {"CLUSTER", Verb::kCluster, 1, 4},
}};

// The most arguments any verb takes; one more slot tells "too many".
constexpr std::size_t kMaxArgs = 4;

const VerbInfo* find_verb(std::string_view word) {
  for (const VerbInfo& info : kVerbs) {
    if (equals_upper(word, info.word)) return &info;
  }
  return nullptr;
}

ParseStatus fail(ParseError& error, ErrorCode code, std::string_view message) {
  error.code = code;
  error.message.assign(message);
  return ParseStatus::kError;
}

void reset(Request& request) {
  request.tag = {};
  request.verb = Verb::kPing;
  request.name.clear();
  request.has_name = false;
  request.count = 1;
  request.timeout_ms = -1;
  request.value = 0;
  request.max = 0;
  request.exclusive = false;
  request.version = 0;
  request.text = {};
  request.has_text = false;
  request.pending_tag = {};
  request.option = SessionOption::kQueued;
  request.option_on = false;
  request.session_id = {};
  request.secret = {};
  request.cluster_action = ClusterAction::kStatus;
  request.member_id = 0;
  request.fences_by = 0;
  request.raft_address = {};
  request.client_address = {};
}

// The messages are fixed texts, never echoes of the request: a field may hold
// any byte, and an answer must stay one clean line.
constexpr std::string_view kBadCount = "count must be 1..2147483647";
constexpr std::string_view kBadTimeout = "timeout_ms must be -1 or 0..9223372036854775807";

// CLUSTER STATUS | ADD <id> <raft-address> <client-address> | REMOVE <id> | FENCES <n>.
ParseStatus parse_cluster(const std::string_view* args, std::size_t argc, Request& request, ParseError& error) {
  constexpr std::string_view kUsage =
      "CLUSTER STATUS, CLUSTER ADD <id> <raft-address> <client-address>, CLUSTER REMOVE <id> or CLUSTER FENCES <n>";
  if (equals_upper(args[0], "FENCES")) {
    request.cluster_action = ClusterAction::kFences;
    if (argc != 2) return fail(error, ErrorCode::kBadRequest, kUsage);
    static_assert(kMaxFenceRaise == 9007199254740992u, "the message below names it");
    if (!parse_session_id(args[1], request.fences_by) || request.fences_by > kMaxFenceRaise) {
      return fail(error, ErrorCode::kBadArg, "the fences rise by a decimal number 1..9007199254740992 (2^53)");
    }
    return ParseStatus::kRequest;
  }
  std::size_t want = 0;
  if (equals_upper(args[0], "STATUS")) {
    request.cluster_action = ClusterAction::kStatus;
    want = 1;
  } else if (equals_upper(args[0], "ADD")) {
    request.cluster_action = ClusterAction::kAdd;
    want = 4;
  } else if (equals_upper(args[0], "REMOVE")) {
    request.cluster_action = ClusterAction::kRemove;
    want = 2;
  } else {
    return fail(error, ErrorCode::kBadArg, kUsage);
  }
  if (argc != want) return fail(error, ErrorCode::kBadRequest, kUsage);
  static_assert(kMaxServerId == 9007199254740992u, "the message below names it");
  if (want >= 2 && (!parse_session_id(args[1], request.member_id) || request.member_id > kMaxServerId)) {
    return fail(error, ErrorCode::kBadArg, "a server id is a decimal number 1..9007199254740992 (2^53)");
  }
  if (want == 4) {
    request.raft_address = args[2];
    request.client_address = args[3];
  }
  return ParseStatus::kRequest;
}

ParseStatus parse_name(std::string_view field, Request& request, ParseError& error) {
  if (decode_name(field, request.name) != ErrorCode::kNone) {
    return fail(error, ErrorCode::kBadName,
                "a name is 1-255 bytes of UTF-8 without control characters, not starting with $, "
                "and % must be followed by two hex digits");
  }
  request.has_name = true;
  return ParseStatus::kRequest;
}

ParseStatus parse_create(const std::string_view* args, std::size_t n, Request& request, ParseError& error) {
  if (!parse_int(args[1], 0, kMaxCount, request.value)) {
    return fail(error, ErrorCode::kBadArg, "value must be 0..2147483647");
  }
  request.max = request.value;
  std::size_t next = 2;
  if (n > next && equals_upper(args[next], "EXCL")) {
    // EXCL in the max position: max defaults to value, and EXCL is the last field.
    if (n > next + 1) return fail(error, ErrorCode::kBadRequest, "nothing may follow EXCL");
    request.exclusive = true;
  } else if (n > next) {
    if (!parse_int(args[next], 0, kMaxCount, request.max)) {
      return fail(error, ErrorCode::kBadArg, "max must be 1..2147483647");
    }
    ++next;
    if (n > next) {
      if (!equals_upper(args[next], "EXCL")) return fail(error, ErrorCode::kBadArg, "expected EXCL");
      request.exclusive = true;
    }
  }
  if (request.max < 1) return fail(error, ErrorCode::kBadArg, "max must be at least 1");
  if (request.max < request.value) return fail(error, ErrorCode::kBadArg, "max must be at least value");
  return ParseStatus::kRequest;
}

ParseStatus parse_arguments(const std::string_view* args, std::size_t n, Request& request, ParseError& error) {
  switch (request.verb) {
    case Verb::kHello:
      if (!parse_int(args[0], 0, kMaxInt64, request.version)) {
        return fail(error, ErrorCode::kBadArg, "version must be a number");
      }
      if (request.version != kProtocolVersion) return fail(error, ErrorCode::kBadArg, "unsupported version");
      if (n > 1) {
        request.text = args[1];
        request.has_text = true;
        // 1.1: the label is a field decoded like a name (it is shown encoded
        // in HOLDERS, WAITERS and SESSIONS); one that is no valid name is
        // refused as an argument, not as a name.
        if (decode_name(args[1], request.name) != ErrorCode::kNone) {
          return fail(error, ErrorCode::kBadArg,
                      "a label is decoded and checked like a name: 1-255 bytes of UTF-8 without control "
                      "characters, not starting with $, and % must be followed by two hex digits");
        }
        request.has_name = true;
      }
      return ParseStatus::kRequest;
    case Verb::kAcquire:
    case Verb::kWait:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      if (n > 1 && !parse_int(args[1], 1, kMaxCount, request.count)) return fail(error, ErrorCode::kBadArg, kBadCount);
      if (n > 2 && !parse_int(args[2], -1, kMaxInt64, request.timeout_ms)) {
        return fail(error, ErrorCode::kBadArg, kBadTimeout);
      }
      return ParseStatus::kRequest;
    case Verb::kRelease:
    case Verb::kPost:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      if (n > 1 && !parse_int(args[1], 1, kMaxCount, request.count)) return fail(error, ErrorCode::kBadArg, kBadCount);
      return ParseStatus::kRequest;
    case Verb::kCancel:
      if (!is_valid_tag(args[0])) return fail(error, ErrorCode::kBadArg, "the pending tag is not a valid tag");
      request.pending_tag = args[0];
      return ParseStatus::kRequest;
    case Verb::kCreate:
      if (parse_name(args[0], request, error) != ParseStatus::kRequest) return ParseStatus::kError;
      return parse_create(args, n, request, error);
    case Verb::kDelete:
    case Verb::kGet:
      return parse_name(args[0], request, error);
    case Verb::kList:
      return n > 0 ? parse_name(args[0], request, error) : ParseStatus::kRequest;
    case Verb::kPing:
      if (n > 0) {
        request.text = args[0];
        request.has_text = true;
      }
      return ParseStatus::kRequest;
    case Verb::kOption:
      if (!equals_upper(args[0], "QUEUED")) return fail(error, ErrorCode::kBadArg, "unknown option (known: queued)");
      request.option = SessionOption::kQueued;
      if (equals_upper(args[1], "ON")) {
        request.option_on = true;
      } else if (equals_upper(args[1], "OFF")) {
        request.option_on = false;
      } else {
        return fail(error, ErrorCode::kBadArg, "the value of queued is on or off");
      }
      return ParseStatus::kRequest;
    case Verb::kHolders:
    case Verb::kWaiters:
      return parse_name(args[0], request, error);
    case Verb::kKick:
      request.session_id = args[0];
      return ParseStatus::kRequest;
    case Verb::kAuth:
      // The token as sent: the dispatcher's verifier judges it.
      request.text = args[0];
      request.has_text = true;
      return ParseStatus::kRequest;
    case Verb::kResume: {
      std::uint64_t id = 0;
      if (!parse_session_id(args[0], id)) {
        return fail(error, ErrorCode::kBadArg, "a session id is a decimal number 1..18446744073709551615");
      }
      if (!is_valid_resume_secret(args[1])) return fail(error, ErrorCode::kBadArg, "a secret is 16 to 64 of [0-9a-f]");
      request.session_id = args[0];
      request.secret = args[1];
      return ParseStatus::kRequest;
    }
    case Verb::kStats:
    case Verb::kQuit:
    case Verb::kSessions:
    case Verb::kLease:
    case Verb::kResumable:
    case Verb::kMine:
    case Verb::kLeader:
      return ParseStatus::kRequest;
    case Verb::kCluster:
      return parse_cluster(args, n, request, error);
  }
  return fail(error, ErrorCode::kUnknownVerb, "unknown verb");
}

}  // namespace

ParseStatus parse_request(std::string_view line, Request& request, ParseError& error) {
  reset(request);
  error.code = ErrorCode::kNone;
  error.tag = {};
  error.message.clear();
  if (line.empty()) return ParseStatus::kEmpty;

  const std::size_t tag_end = line.find(' ');
  const std::string_view tag = line.substr(0, tag_end);
  if (!is_valid_tag(tag)) return fail(error, ErrorCode::kBadRequest, "a line must start with a valid tag");
  error.tag = tag;
  request.tag = tag;
  if (tag_end == std::string_view::npos) return fail(error, ErrorCode::kBadRequest, "missing verb");

  // fields[0] is the verb, then the arguments; the last slot only tells that
  // there are more than any verb takes.
  std::array<std::string_view, kMaxArgs + 2> fields;
  std::size_t count = 0;
  std::string_view rest = line.substr(tag_end + 1);
  while (true) {
    const std::size_t space = rest.find(' ');
    const std::string_view field = rest.substr(0, space);
    if (field.empty()) return fail(error, ErrorCode::kBadRequest, "empty field (fields are separated by one space)");
    if (count < fields.size()) fields[count] = field;
    ++count;
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }

  const VerbInfo* info = find_verb(fields[0]);
  if (info == nullptr) return fail(error, ErrorCode::kUnknownVerb, "unknown verb");
  request.verb = info->verb;
  const std::size_t args = count - 1;
  if (args < info->min_args) return fail(error, ErrorCode::kBadRequest, "missing argument");
  if (args > info->max_args) return fail(error, ErrorCode::kBadRequest, "too many arguments");
  return parse_arguments(fields.data() + 1, args, request, error);
}

std::string_view verb_name(Verb verb) {
  for (const VerbInfo& info : kVerbs) {
    if (info.verb == verb) return info.word;
  }
  return "";
}

bool parse_session_id(std::string_view text, std::uint64_t& id) {
  std::uint64_t value = 0;
  if (!parse_uint(text, value) || value == 0) return false;
  id = value;
  return true;
}

bool is_valid_resume_secret(std::string_view secret) {
  if (secret.size() < 16 || secret.size() > 64) return false;
  return std::all_of(secret.begin(), secret.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_valid_ping_payload(std::string_view payload) {
  return payload.size() <= kMaxPingPayloadBytes &&
         payload.find_first_of(std::string_view(" \r\n\0", 4)) == std::string_view::npos;
}

// ---------------------------------------------------------------------------
// Encoders

namespace {

// "<tag> <VERB>", the start of every request line.
void begin(std::string& out, std::string_view tag, std::string_view verb) {
  assert(is_valid_tag(tag));
  out.append(tag);
  out.push_back(' ');
  out.append(verb);
}

void add_name(std::string& out, std::string_view name) {
  out.push_back(' ');
  append_request_name(out, name);
}

void add_number(std::string& out, std::int64_t n) {
  out.push_back(' ');
  append_decimal(out, n);
}

void end(std::string& out) {
  out.push_back('\n');
}

// ACQUIRE and WAIT: the timeout needs the count before it.
void encode_take(std::string& out, std::string_view tag, std::string_view verb, std::string_view name,
                 std::int64_t count, std::int64_t timeout_ms) {
  assert(count >= 1 && count <= kMaxCount && timeout_ms >= -1);
  begin(out, tag, verb);
  add_name(out, name);
  if (count != 1 || timeout_ms != -1) add_number(out, count);
  if (timeout_ms != -1) add_number(out, timeout_ms);
  end(out);
}

// RELEASE and POST.
void encode_give(std::string& out, std::string_view tag, std::string_view verb, std::string_view name,
                 std::int64_t count) {
  assert(count >= 1 && count <= kMaxCount);
  begin(out, tag, verb);
  add_name(out, name);
  if (count != 1) add_number(out, count);
  end(out);
}

void encode_named(std::string& out, std::string_view tag, std::string_view verb, std::string_view name) {
  begin(out, tag, verb);
  add_name(out, name);
  end(out);
}

void encode_bare(std::string& out, std::string_view tag, std::string_view verb) {
  begin(out, tag, verb);
  end(out);
}

}  // namespace

void encode_hello(std::string& out, std::string_view tag, std::string_view label) {
  begin(out, tag, "HELLO");
  add_number(out, kProtocolVersion);
  if (!label.empty()) add_name(out, label);
  end(out);
}

void encode_acquire(std::string& out, std::string_view tag, std::string_view name, std::int64_t count,
                    std::int64_t timeout_ms) {
  encode_take(out, tag, "ACQUIRE", name, count, timeout_ms);
}

void encode_wait(std::string& out, std::string_view tag, std::string_view name, std::int64_t count,
                 std::int64_t timeout_ms) {
  encode_take(out, tag, "WAIT", name, count, timeout_ms);
}

void encode_release(std::string& out, std::string_view tag, std::string_view name, std::int64_t count) {
  encode_give(out, tag, "RELEASE", name, count);
}

void encode_post(std::string& out, std::string_view tag, std::string_view name, std::int64_t count) {
  encode_give(out, tag, "POST", name, count);
}

void encode_cancel(std::string& out, std::string_view tag, std::string_view pending_tag) {
  assert(is_valid_tag(pending_tag));
  begin(out, tag, "CANCEL");
  out.push_back(' ');
  out.append(pending_tag);
  end(out);
}

void encode_create(std::string& out, std::string_view tag, std::string_view name, std::int64_t value, std::int64_t max,
                   bool exclusive) {
  assert(value >= 0 && max >= 1 && value <= max && max <= kMaxCount);
  begin(out, tag, "CREATE");
  add_name(out, name);
  add_number(out, value);
  if (max != value) add_number(out, max);
  if (exclusive) out.append(" EXCL");
  end(out);
}

void encode_delete(std::string& out, std::string_view tag, std::string_view name) {
  encode_named(out, tag, "DELETE", name);
}

void encode_get(std::string& out, std::string_view tag, std::string_view name) {
  encode_named(out, tag, "GET", name);
}

void encode_list(std::string& out, std::string_view tag, std::optional<std::string_view> prefix) {
  begin(out, tag, "LIST");
  if (prefix) add_name(out, *prefix);
  end(out);
}

void encode_stats(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "STATS");
}

void encode_ping(std::string& out, std::string_view tag, std::string_view payload) {
  assert(is_valid_ping_payload(payload));
  begin(out, tag, "PING");
  if (!payload.empty()) {
    out.push_back(' ');
    out.append(payload);
  }
  end(out);
}

void encode_quit(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "QUIT");
}

void encode_option(std::string& out, std::string_view tag, SessionOption option, bool on) {
  begin(out, tag, "OPTION");
  switch (option) {
    case SessionOption::kQueued:
      out.append(" queued");
      break;
  }
  out.append(on ? " on" : " off");
  end(out);
}

void encode_holders(std::string& out, std::string_view tag, std::string_view name) {
  encode_named(out, tag, "HOLDERS", name);
}

void encode_waiters(std::string& out, std::string_view tag, std::string_view name) {
  encode_named(out, tag, "WAITERS", name);
}

void encode_sessions(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "SESSIONS");
}

void encode_kick(std::string& out, std::string_view tag, std::uint64_t session_id) {
  begin(out, tag, "KICK");
  out.push_back(' ');
  append_decimal(out, session_id);
  end(out);
}

void encode_cluster_status(std::string& out, std::string_view tag) {
  begin(out, tag, "CLUSTER");
  out += " STATUS";
  end(out);
}

void encode_cluster_add(std::string& out, std::string_view tag, std::uint64_t id, std::string_view raft_address,
                        std::string_view client_address) {
  begin(out, tag, "CLUSTER");
  out += " ADD ";
  append_decimal(out, id);
  out.push_back(' ');
  out += raft_address;
  out.push_back(' ');
  out += client_address;
  end(out);
}

void encode_cluster_remove(std::string& out, std::string_view tag, std::uint64_t id) {
  begin(out, tag, "CLUSTER");
  out += " REMOVE ";
  append_decimal(out, id);
  end(out);
}

void encode_cluster_fences(std::string& out, std::string_view tag, std::uint64_t by) {
  begin(out, tag, "CLUSTER");
  out += " FENCES ";
  append_decimal(out, by);
  end(out);
}

void encode_lease(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "LEASE");
}

void encode_resumable(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "RESUMABLE");
}

void encode_resume(std::string& out, std::string_view tag, std::uint64_t session_id, std::string_view secret) {
  assert(session_id >= 1 && is_valid_resume_secret(secret));
  begin(out, tag, "RESUME");
  out.push_back(' ');
  append_decimal(out, session_id);
  out.push_back(' ');
  out.append(secret);
  end(out);
}

void encode_mine(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "MINE");
}

void encode_leader(std::string& out, std::string_view tag) {
  encode_bare(out, tag, "LEADER");
}

void encode_auth(std::string& out, std::string_view tag, std::string_view token) {
  begin(out, tag, "AUTH");
  out.push_back(' ');
  out.append(token);
  end(out);
}

}  // namespace netsem::protocol
