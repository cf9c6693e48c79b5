// The entry codec (entry.h): each command is its type (u8), the length of
// its fields (u32), its fields; the rules of check_command are applied to
// what is decoded, so no field the table would assert on gets through.
#include "replication/entry.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>

#include "protocol/fields.h"
#include "protocol/names.h"
#include "replication/wire.h"

namespace netsem::replication {
namespace {

using protocol::kMaxCount;

// Command types on the wire: never renumber.
enum class CommandType : std::uint8_t {
  kOpenSession = 1,
  kSessionRequest = 2,
  kCloseSession = 3,
  kTouchSession = 4,
  kTouchAll = 5,
  kAdvanceTime = 6,
  kReconfigure = 7,
  kResumeSession = 8,
  kSetMember = 9,
  kRemoveMember = 10,
  kRaiseFences = 11,
};

Status invalid(std::string why) {
  return {StatusCode::kInvalidArgument, std::move(why)};
}

bool valid_name(std::string_view name) {
  return protocol::check_name(name) == protocol::ErrorCode::kNone;
}

Status check(const OpenSession& c) {
  if (!c.label.empty() && !valid_name(c.label)) return invalid("open: the label is not a valid name");
  if (c.peer.size() > kMaxPeerBytes) return invalid("open: the peer is too long");
  if (c.dialect.size() > kMaxDialectBytes) return invalid("open: the dialect is too long");
  if (c.origin == 0) return invalid("open: origin 0");
  if (c.origin == kResumeProbe) return invalid("open: origin is the resume probe's host");
  if (c.secret_digest.size() != kSecretDigestBytes) return invalid("open: the secret digest is not 32 bytes");
  return Status::ok();
}

Status check(const SessionRequest& c) {
  if (c.session == 0) return invalid("request: session 0");
  if (c.origin == 0) return invalid("request: origin 0");
  if (c.seq == 0) return invalid("request: seq 0");
  if (!protocol::is_valid_tag(c.tag)) return invalid("request: invalid tag");
  const auto count_ok = [&] { return c.count >= 1 && c.count <= kMaxCount; };
  switch (c.verb) {
    case RequestVerb::kAcquire:
    case RequestVerb::kWait:
      if (c.timeout_ms < -1) return invalid("request: timeout below -1");
      [[fallthrough]];
    case RequestVerb::kRelease:
    case RequestVerb::kPost:
      if (!count_ok()) return invalid("request: count out of range");
      [[fallthrough]];
    case RequestVerb::kDelete:
      if (!valid_name(c.name)) return invalid("request: invalid name");
      return Status::ok();
    case RequestVerb::kCreate:
      if (!valid_name(c.name)) return invalid("request: invalid name");
      if (c.max < 1 || c.max > kMaxCount || c.value < 0 || c.value > c.max) {
        return invalid("request: CREATE value or max out of range");
      }
      return Status::ok();
    case RequestVerb::kCancel:
      if (!protocol::is_valid_tag(c.pending_tag)) return invalid("request: invalid CANCEL tag");
      return Status::ok();
    case RequestVerb::kKick:
      if (c.target == 0) return invalid("request: KICK of session 0");
      return Status::ok();
    case RequestVerb::kHello:
      if (!c.name.empty() && !valid_name(c.name)) return invalid("request: HELLO label is not a valid name");
      return Status::ok();
    case RequestVerb::kSync:
      return Status::ok();
  }
  return invalid("request: unknown verb");
}

Status check(const CloseSession& c) {
  if (c.session == 0) return invalid("close: session 0");
  if (c.origin == 0) return invalid("close: origin 0");
  if (c.cause < CloseCause::kClosed || c.cause > CloseCause::kShutdown) return invalid("close: unknown cause");
  return Status::ok();
}

Status check(const TouchSession& c) {
  if (c.session == 0) return invalid("touch: session 0");
  if (c.origin == 0) return invalid("touch: origin 0");
  return Status::ok();
}

Status check(const TouchAll&) {
  return Status::ok();
}

Status check(const AdvanceTime&) {
  return Status::ok();
}

Status check(const Reconfigure& c) {
  for (const auto& [name, limit] : c.limits) {
    if (!valid_name(name)) return invalid("reconfigure: invalid name");
    if (limit < 1 || limit > kMaxCount) return invalid("reconfigure: limit out of range");
  }
  if (c.session_timeout_ms < 0 || c.session_timeout_ms > kMaxLogTimeMs) {
    return invalid("reconfigure: session timeout out of range");
  }
  return Status::ok();
}

Status check(const ResumeSession& c) {
  if (c.session == 0) return invalid("resume: session 0");
  if (c.origin == 0) return invalid("resume: origin 0");
  if (c.origin == kResumeProbe) return invalid("resume: origin is the resume probe's host");
  if (c.secret_digest.size() != kSecretDigestBytes) return invalid("resume: the secret digest is not 32 bytes");
  if (c.from_host == 0) return invalid("resume: from host 0");
  return Status::ok();
}

Status check(const SetMember& c) {
  if (c.id == 0) return invalid("member: id 0");
  if (!is_valid_member_address(c.client_address)) return invalid("member: the client address is not host:port");
  return Status::ok();
}

Status check(const RemoveMember& c) {
  if (c.id == 0) return invalid("member: id 0");
  return Status::ok();
}

Status check(const RaiseFences& c) {
  if (c.by == 0 || c.by > kMaxFenceRaise) return invalid("raise fences: by out of range");
  if (c.server == 0) return invalid("raise fences: server 0");
  return Status::ok();
}

// The fields of each command (without type and length).
void put(wire::Writer& w, const OpenSession& c) {
  w.str(c.label);
  w.str(c.peer);
  w.str(c.dialect);
  w.u64(c.origin);
  w.u64(c.nonce);
  w.raw(c.secret_digest);
}
void put(wire::Writer& w, const SessionRequest& c) {
  w.u64(c.session);
  w.u64(c.origin);
  w.u64(c.seq);
  w.u8(static_cast<std::uint8_t>(c.verb));
  w.str(c.tag);
  w.str(c.name);
  w.i64(c.count);
  w.i64(c.timeout_ms);
  w.i64(c.value);
  w.i64(c.max);
  w.u8(c.exclusive ? 1 : 0);
  w.str(c.pending_tag);
  w.u64(c.target);
}
void put(wire::Writer& w, const CloseSession& c) {
  w.u64(c.session);
  w.u64(c.origin);
  w.u8(static_cast<std::uint8_t>(c.cause));
}
void put(wire::Writer& w, const TouchSession& c) {
  w.u64(c.session);
  w.u64(c.origin);
}
void put(wire::Writer&, const TouchAll&) {}
void put(wire::Writer&, const AdvanceTime&) {}
void put(wire::Writer& w, const Reconfigure& c) {
  w.i64(c.session_timeout_ms);
  w.u32(static_cast<std::uint32_t>(c.limits.size()));
  for (const auto& [name, limit] : c.limits) {
    w.str(name);
    w.i64(limit);
  }
}
void put(wire::Writer& w, const ResumeSession& c) {
  w.u64(c.session);
  w.u64(c.origin);
  w.raw(c.secret_digest);
  w.u64(c.from_host);
}
void put(wire::Writer& w, const SetMember& c) {
  w.u64(c.id);
  w.str(c.client_address);
}
void put(wire::Writer& w, const RemoveMember& c) {
  w.u64(c.id);
}
void put(wire::Writer& w, const RaiseFences& c) {
  w.u64(c.by);
  w.u64(c.server);
  w.u64(c.nonce);
}

constexpr CommandType type_of(const Command& command) {
  return static_cast<CommandType>(command.index() + 1);
}

// A command as an entry holds it: type, length of the fields, fields.
void put_command(wire::Writer& w, const Command& command) {
  w.u8(static_cast<std::uint8_t>(type_of(command)));
  const std::size_t length_at = w.bytes().size();
  w.u32(0);
  std::visit([&](const auto& c) { put(w, c); }, command);
  const std::size_t length = w.bytes().size() - length_at - 4;
  for (int i = 0; i < 4; ++i) w.bytes()[length_at + i] = static_cast<char>((length >> (8 * i)) & 0xff);
}

// A secret digest as an entry of `version` holds it: version 3's 32 raw
// bytes, or version 2's secret in clear (u16 length, then [0-9a-f]), hashed
// here. A version 2 secret that is not valid leaves the digest empty, which
// check_command refuses.
std::string get_secret_digest(wire::Reader& r, std::uint8_t version) {
  if (version >= 3) return std::string(r.raw(kSecretDigestBytes));
  const std::string_view secret = r.str(kMaxSecretBytes);
  return r.ok() && is_valid_secret(secret) ? secret_digest(secret) : std::string();
}

// Reads the fields of a command of `type` in an entry of `version`; false
// for an unknown type.
bool get(wire::Reader& r, CommandType type, std::uint8_t version, Command& out) {
  switch (type) {
    case CommandType::kOpenSession: {
      OpenSession c;
      c.label = r.str(protocol::kMaxNameBytes);
      c.peer = r.str(kMaxPeerBytes);
      c.dialect = r.str(kMaxDialectBytes);
      c.origin = r.u64();
      c.nonce = r.u64();
      c.secret_digest = get_secret_digest(r, version);
      out = std::move(c);
      return true;
    }
    case CommandType::kSessionRequest: {
      SessionRequest c;
      c.session = r.u64();
      c.origin = r.u64();
      c.seq = r.u64();
      c.verb = static_cast<RequestVerb>(r.u8());
      c.tag = r.str(protocol::kMaxTagBytes);
      c.name = r.str(protocol::kMaxNameBytes);
      c.count = r.i64();
      c.timeout_ms = r.i64();
      c.value = r.i64();
      c.max = r.i64();
      const std::uint8_t exclusive = r.u8();
      if (exclusive > 1) r.fail();
      c.exclusive = exclusive == 1;
      c.pending_tag = r.str(protocol::kMaxTagBytes);
      c.target = r.u64();
      out = std::move(c);
      return true;
    }
    case CommandType::kCloseSession: {
      CloseSession c;
      c.session = r.u64();
      c.origin = r.u64();
      c.cause = static_cast<CloseCause>(r.u8());
      out = c;
      return true;
    }
    case CommandType::kTouchSession: {
      TouchSession c;
      c.session = r.u64();
      c.origin = r.u64();
      out = c;
      return true;
    }
    case CommandType::kTouchAll:
      out = TouchAll{};
      return true;
    case CommandType::kAdvanceTime:
      out = AdvanceTime{};
      return true;
    case CommandType::kReconfigure: {
      Reconfigure c;
      c.session_timeout_ms = r.i64();
      const std::uint32_t n = r.u32();
      // Each limit is at least 2 + 1 + 8 bytes: a count beyond what is left
      // is refused before anything is allocated for it.
      if (n > r.remaining() / 11) r.fail();
      for (std::uint32_t i = 0; r.ok() && i < n; ++i) {
        std::string name(r.str(protocol::kMaxNameBytes));
        const std::int64_t limit = r.i64();
        c.limits.emplace_back(std::move(name), limit);
      }
      out = std::move(c);
      return true;
    }
    case CommandType::kResumeSession: {
      ResumeSession c;
      c.session = r.u64();
      c.origin = r.u64();
      c.secret_digest = get_secret_digest(r, version);
      c.from_host = r.u64();
      out = std::move(c);
      return true;
    }
    case CommandType::kSetMember: {
      SetMember c;
      c.id = r.u64();
      c.client_address = r.str(kMaxPeerBytes);
      out = std::move(c);
      return true;
    }
    case CommandType::kRemoveMember: {
      RemoveMember c;
      c.id = r.u64();
      out = c;
      return true;
    }
    case CommandType::kRaiseFences: {
      RaiseFences c;
      c.by = r.u64();
      c.server = r.u64();
      c.nonce = r.u64();
      out = c;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view close_cause_name(CloseCause cause) {
  switch (cause) {
    case CloseCause::kClosed:
      return "closed";
    case CloseCause::kQuit:
      return "quit";
    case CloseCause::kIdle:
      return "idle";
    case CloseCause::kKicked:
      return "kicked";
    case CloseCause::kError:
      return "error";
    case CloseCause::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

bool is_valid_secret(std::string_view secret) {
  if (secret.size() < kMinSecretBytes || secret.size() > kMaxSecretBytes) return false;
  return std::all_of(secret.begin(), secret.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string secret_digest(std::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  static_assert(SHA256_DIGEST_LENGTH == kSecretDigestBytes);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

bool same_secret_digest(std::string_view a, std::string_view b) {
  return a.size() == kSecretDigestBytes && b.size() == kSecretDigestBytes &&
         CRYPTO_memcmp(a.data(), b.data(), kSecretDigestBytes) == 0;
}

bool is_valid_member_address(std::string_view address) {
  if (address.size() > kMaxPeerBytes) return false;
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (std::any_of(address.begin(), address.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; })) {
    return false;
  }
  unsigned port = 0;
  const std::string_view digits = address.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  return ec == std::errc() && end == digits.data() + digits.size() && port >= 1 && port <= 65535;
}

Status check_command(const Command& command) {
  return std::visit([](const auto& c) { return check(c); }, command);
}

ServerId* origin_of(Command& command) {
  return std::visit(
      [](auto& c) -> ServerId* {
        if constexpr (requires { c.origin; }) {
          return &c.origin;
        } else {
          return nullptr;
        }
      },
      command);
}

ServerId origin_of(const Command& command) {
  const ServerId* origin = origin_of(const_cast<Command&>(command));
  return origin != nullptr ? *origin : 0;
}

std::string encode_entry(const Entry& entry) {
  wire::Writer w = wire::begin_frame(kEntryMagic, kEntryVersion);
  w.i64(entry.time_ms);
  w.u32(static_cast<std::uint32_t>(entry.commands.size()));
  for (const Command& command : entry.commands) put_command(w, command);
  return wire::end_frame(w);
}

std::string encode_command(const Command& command) {
  wire::Writer w;
  w.bytes().reserve(128);
  put_command(w, command);
  return std::move(w.bytes());
}

Result<Entry> decode_entry(std::string_view bytes) {
  std::uint8_t version = 0;
  auto body = wire::open_frame(bytes, kEntryMagic, kOldestEntryVersion, kEntryVersion, version, "entry");
  if (!body) return body.status();
  wire::Reader r(*body);
  Entry entry;
  entry.time_ms = r.i64();
  const std::uint32_t n = r.u32();
  if (!r.ok()) return Status(StatusCode::kCorruption, "entry: truncated header");
  if (entry.time_ms < 0 || entry.time_ms > kMaxLogTimeMs)
    return Status(StatusCode::kCorruption, "entry: time out of range");
  // A command is at least 5 bytes.
  if (n > r.remaining() / 5) return Status(StatusCode::kCorruption, "entry: more commands than bytes");
  entry.commands.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto type = static_cast<CommandType>(r.u8());
    const std::uint32_t length = r.u32();
    if (!r.ok() || length > r.remaining()) {
      return Status(StatusCode::kCorruption, fmt::format("entry: command {} truncated", i));
    }
    wire::Reader fields(r.peek(length));
    r.skip(length);
    Command command;
    if (!get(fields, type, version, command)) {
      return Status(StatusCode::kCorruption,
                    fmt::format("entry: command {} of unknown type {}", i, static_cast<int>(type)));
    }
    if (!fields.done()) return Status(StatusCode::kCorruption, fmt::format("entry: command {} malformed", i));
    if (Status ok = check_command(command); !ok) {
      return Status(StatusCode::kCorruption, fmt::format("entry: command {}: {}", i, ok.message()));
    }
    entry.commands.push_back(std::move(command));
  }
  if (!r.done()) return Status(StatusCode::kCorruption, "entry: bytes after the last command");
  return entry;
}

bool request_from_protocol(SessionId session, const protocol::Request& request, SessionRequest& out) {
  using protocol::Verb;
  out = SessionRequest{};
  out.session = session;
  out.tag.assign(request.tag);
  switch (request.verb) {
    case Verb::kAcquire:
    case Verb::kWait:
      out.verb = request.verb == Verb::kAcquire ? RequestVerb::kAcquire : RequestVerb::kWait;
      out.name = request.name;
      out.count = request.count;
      out.timeout_ms = request.timeout_ms;
      return true;
    case Verb::kRelease:
    case Verb::kPost:
      out.verb = request.verb == Verb::kRelease ? RequestVerb::kRelease : RequestVerb::kPost;
      out.name = request.name;
      out.count = request.count;
      return true;
    case Verb::kCancel:
      out.verb = RequestVerb::kCancel;
      out.pending_tag.assign(request.pending_tag);
      return true;
    case Verb::kCreate:
      out.verb = RequestVerb::kCreate;
      out.name = request.name;
      out.value = request.value;
      out.max = request.max;
      out.exclusive = request.exclusive;
      return true;
    case Verb::kDelete:
      out.verb = RequestVerb::kDelete;
      out.name = request.name;
      return true;
    case Verb::kKick:
      out.verb = RequestVerb::kKick;
      return protocol::parse_session_id(request.session_id, out.target);
    case Verb::kHello:
      out.verb = RequestVerb::kHello;
      if (request.has_name) out.name = request.name;
      return true;
    default:
      return false;
  }
}

}  // namespace netsem::replication
