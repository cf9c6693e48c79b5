// Tests of the entry and results codecs: every command round-trips, byte for
// byte, and a command's own bytes are its part of any entry; the rules of
// check_command, table-driven; damaged bytes (each byte flipped, truncations,
// a good checksum over a bad field) are refused; the parsed v1 requests map
// to the commands.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "replication/entry.h"
#include "replication/entry_generator.h"
#include "replication/results.h"
#include "replication/state_machine.h"
#include "replication/wire.h"

namespace netsem::replication {
namespace {

using generated::kSecret;
using generated::make_answer;
using generated::make_close;
using generated::make_open;
using generated::make_request;
using generated::make_resume;
using generated::make_touch;

// A request with its host and seq filled in.
SessionRequest sequenced(SessionRequest r, std::uint64_t seq, ServerId origin = 3) {
  r.seq = seq;
  r.origin = origin;
  return r;
}

Entry every_command() {
  Entry e;
  e.time_ms = 123456;
  e.commands.push_back(make_open("build", "10.0.0.1:5000", "v1+tls", 2, 0xfedcba9876543210, kSecret));
  // (The largest origin: 2^64-1 is the resume probe's host, below.)
  e.commands.push_back(make_open("", "", "", kResumeProbe - 1, 0, std::string(64, 'f')));
  SessionRequest acquire = make_request(1, RequestVerb::kAcquire, "t1", "db%20pool", 3, 2500);
  e.commands.push_back(sequenced(acquire, std::numeric_limits<std::uint64_t>::max()));
  SessionRequest create = make_request(2, RequestVerb::kCreate, "t2", "jobs");
  create.value = 2;
  create.max = 5;
  create.exclusive = true;
  e.commands.push_back(sequenced(create, 1));
  SessionRequest cancel = make_request(2, RequestVerb::kCancel, "t3");
  cancel.pending_tag = "t1";
  e.commands.push_back(sequenced(cancel, 2));
  SessionRequest kick = make_request(2, RequestVerb::kKick, "t4");
  kick.target = 77;
  e.commands.push_back(sequenced(kick, 3));
  e.commands.push_back(make_close(1, CloseCause::kKicked, 4));
  e.commands.push_back(make_touch(2, 5));
  e.commands.push_back(TouchAll{});
  e.commands.push_back(AdvanceTime{});
  e.commands.push_back(Reconfigure{{{"a", 1}, {"b", 2147483647}}, 30000});
  e.commands.push_back(make_resume(2, 6, std::string(16, '0')));
  e.commands.push_back(make_resume(3, 6, std::string(64, 'f'), kResumeProbe));
  e.commands.push_back(SetMember{7, "[::1]:53555"});
  e.commands.push_back(SetMember{8, "db-3.example:1"});
  e.commands.push_back(RemoveMember{9});
  e.commands.push_back(RaiseFences{1000, 3, 0xfedcba9876543210});
  e.commands.push_back(RaiseFences{kMaxFenceRaise, 1, 0});
  return e;
}

TEST(Entry, EveryCommandRoundTrips) {
  const Entry entry = every_command();
  for (const Command& c : entry.commands) EXPECT_TRUE(check_command(c).is_ok());
  const std::string bytes = encode_entry(entry);
  auto decoded = decode_entry(bytes);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(*decoded, entry);
  EXPECT_EQ(encode_entry(*decoded), bytes);
  auto empty = decode_entry(encode_entry(Entry{}));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->commands.empty());
}

// A command's own bytes (ClusterNode's key for matching applied commands to
// pending ones) are the bytes an entry holds for it, so equal commands have
// equal keys and different ones different keys.
TEST(Entry, ACommandsBytesAreItsPartOfAnyEntry) {
  const Entry entry = every_command();
  std::string commands;
  for (std::size_t i = 0; i < entry.commands.size(); ++i) {
    const std::string bytes = encode_command(entry.commands[i]);
    const std::string alone = encode_entry(Entry{0, {entry.commands[i]}});
    EXPECT_NE(alone.find(bytes), std::string::npos) << i;
    for (std::size_t j = 0; j < i; ++j) EXPECT_NE(bytes, encode_command(entry.commands[j])) << i << " " << j;
    commands += bytes;
  }
  EXPECT_NE(encode_entry(entry).find(commands), std::string::npos);
}

TEST(Entry, CheckCommandRefusesWhatTheTableWouldAssertOn) {
  const auto req = [](RequestVerb verb) { return sequenced(make_request(1, verb, "t", "x"), 1); };
  std::vector<std::pair<std::string, Command>> bad;
  bad.emplace_back("label", make_open("$bad"));
  bad.emplace_back("peer", make_open("", std::string(kMaxPeerBytes + 1, 'p')));
  bad.emplace_back("dialect", make_open("", "", std::string(kMaxDialectBytes + 1, 'd')));
  bad.emplace_back("open origin 0", make_open("", "", "", 0));
  // The log holds the secret's digest: 32 bytes, no more, no fewer.
  const auto open_digest = [](std::string digest) {
    OpenSession open = make_open();
    open.secret_digest = std::move(digest);
    return open;
  };
  bad.emplace_back("digest short", open_digest(std::string(kSecretDigestBytes - 1, 'a')));
  bad.emplace_back("digest long", open_digest(std::string(kSecretDigestBytes + 1, 'a')));
  bad.emplace_back("digest empty", open_digest(""));
  bad.emplace_back("digest the secret", open_digest(kSecret.substr(0, 16)));
  auto r = req(RequestVerb::kAcquire);
  r.session = 0;
  bad.emplace_back("session 0", r);
  r = req(RequestVerb::kAcquire);
  r.origin = 0;
  bad.emplace_back("request origin 0", r);
  r = req(RequestVerb::kRelease);
  r.seq = 0;
  bad.emplace_back("seq 0", r);
  r = req(RequestVerb::kAcquire);
  r.tag = "bad tag";
  bad.emplace_back("tag", r);
  r = req(RequestVerb::kAcquire);
  r.count = 0;
  bad.emplace_back("count 0", r);
  r = req(RequestVerb::kRelease);
  r.count = protocol::kMaxCount + 1;
  bad.emplace_back("count", r);
  r = req(RequestVerb::kWait);
  r.timeout_ms = -2;
  bad.emplace_back("timeout", r);
  r = req(RequestVerb::kPost);
  r.name = "";
  bad.emplace_back("name", r);
  r = req(RequestVerb::kCreate);
  r.value = 3;
  r.max = 2;
  bad.emplace_back("create", r);
  r = req(RequestVerb::kCancel);
  r.pending_tag = "";
  bad.emplace_back("cancel tag", r);
  r = req(RequestVerb::kKick);
  bad.emplace_back("kick 0", r);
  r = req(RequestVerb::kAcquire);
  r.verb = static_cast<RequestVerb>(42);
  bad.emplace_back("verb", r);
  bad.emplace_back("close cause", make_close(1, static_cast<CloseCause>(9)));
  bad.emplace_back("close 0", make_close(0, CloseCause::kClosed));
  bad.emplace_back("close origin 0", make_close(1, CloseCause::kClosed, 0));
  bad.emplace_back("touch 0", make_touch(0));
  bad.emplace_back("touch origin 0", make_touch(1, 0));
  bad.emplace_back("resume 0", make_resume(0, 1));
  bad.emplace_back("resume origin 0", make_resume(1, 0));
  // No server is the probe's host (a server's id is 1 .. 2^53).
  bad.emplace_back("resume origin probe", make_resume(1, kResumeProbe));
  bad.emplace_back("open origin probe", make_open("", "", "", kResumeProbe));
  ResumeSession resume = make_resume(1, 1);
  resume.secret_digest.pop_back();
  bad.emplace_back("resume digest short", resume);
  resume.secret_digest = "";
  bad.emplace_back("resume digest empty", resume);
  bad.emplace_back("member 0", SetMember{0, "h:1"});
  bad.emplace_back("member no port", SetMember{1, "host"});
  bad.emplace_back("member port 0", SetMember{1, "host:0"});
  bad.emplace_back("member port big", SetMember{1, "host:65536"});
  bad.emplace_back("member port text", SetMember{1, "host:http"});
  bad.emplace_back("member no host", SetMember{1, ":53555"});
  bad.emplace_back("member space", SetMember{1, "a b:53555"});
  bad.emplace_back("member long", SetMember{1, std::string(kMaxPeerBytes - 4, 'h') + ":5355"});
  bad.emplace_back("remove member 0", RemoveMember{0});
  bad.emplace_back("raise fences by 0", RaiseFences{0, 1, 1});
  bad.emplace_back("raise fences by 2^53+1", RaiseFences{kMaxFenceRaise + 1, 1, 1});
  bad.emplace_back("raise fences of server 0", RaiseFences{1000, 0, 1});
  bad.emplace_back("limit", Reconfigure{{{"a", 0}}, 0});
  bad.emplace_back("limit name", Reconfigure{{{"", 1}}, 0});
  bad.emplace_back("timeout", Reconfigure{{}, -1});
  bad.emplace_back("timeout big", Reconfigure{{}, kMaxLogTimeMs + 1});
  for (const auto& [why, command] : bad) {
    EXPECT_EQ(check_command(command).code(), StatusCode::kInvalidArgument) << why;
    // A leader that proposed it anyway: the replicas refuse the whole entry.
    Entry entry;
    entry.commands.push_back(TouchAll{});
    entry.commands.push_back(command);
    auto decoded = decode_entry(encode_entry(entry));
    ASSERT_FALSE(decoded) << why;
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption) << why;
    EXPECT_NE(decoded.status().message().find("command 1"), std::string::npos) << decoded.status().message();
  }
}

TEST(Entry, DamagedBytesAreRefused) {
  const std::string bytes = encode_entry(every_command());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (const unsigned char flip : {0x01, 0x80}) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ flip);
      auto decoded = decode_entry(damaged);
      EXPECT_FALSE(decoded) << "byte " << i;
      if (!decoded) {
        EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
      }
    }
  }
  for (std::size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(decode_entry(bytes.substr(0, n))) << "truncated to " << n;
  EXPECT_FALSE(decode_entry(bytes + "x"));
  // A time out of range, under a good checksum.
  Entry late;
  late.time_ms = kMaxLogTimeMs + 1;
  EXPECT_FALSE(decode_entry(encode_entry(late)));
}

TEST(Entry, GoodChecksumOverBadStructureIsRefused) {
  // Frames whose checksum is right but whose body is not an entry.
  const auto framed = [](const std::string& body) {
    wire::Writer w = wire::begin_frame(kEntryMagic, kEntryVersion);
    w.bytes() += body;
    return wire::end_frame(w);
  };
  wire::Writer body;
  body.i64(0);
  body.u32(1);
  body.u8(99);  // unknown command type
  body.u32(0);
  EXPECT_NE(decode_entry(framed(body.bytes())).status().message().find("unknown type"), std::string::npos);
  wire::Writer count;
  count.i64(0);
  count.u32(1000000);  // more commands than bytes
  EXPECT_FALSE(decode_entry(framed(count.bytes())));
  wire::Writer longer;
  longer.i64(0);
  longer.u32(1);
  longer.u8(5);  // TouchAll with a byte of fields it does not have
  longer.u32(1);
  longer.u8(0);
  EXPECT_NE(decode_entry(framed(longer.bytes())).status().message().find("malformed"), std::string::npos);
  wire::Writer other = wire::begin_frame(kEntryMagic, kEntryVersion + 1);
  other.i64(0);
  other.u32(0);
  EXPECT_NE(decode_entry(wire::end_frame(other)).status().message().find("version"), std::string::npos);
}

TEST(Entry, ParsedRequestsMapToCommands) {
  struct Case {
    std::string line;
    bool replicated;
    RequestVerb verb;
  };
  const std::vector<Case> cases = {
      {"t1 ACQUIRE db 2 500", true, RequestVerb::kAcquire},
      {"t1 WAIT db", true, RequestVerb::kWait},
      {"t1 RELEASE db 2", true, RequestVerb::kRelease},
      {"t1 POST db", true, RequestVerb::kPost},
      {"t1 CANCEL t0", true, RequestVerb::kCancel},
      {"t1 CREATE db 1 3 EXCL", true, RequestVerb::kCreate},
      {"t1 DELETE db", true, RequestVerb::kDelete},
      {"t1 KICK 12", true, RequestVerb::kKick},
      {"t1 HELLO 1 ci", true, RequestVerb::kHello},
      {"t1 GET db", false, {}},
      {"t1 LIST", false, {}},
      {"t1 PING", false, {}},
      {"t1 STATS", false, {}},
      {"t1 QUIT", false, {}},
  };
  for (const Case& c : cases) {
    protocol::Request request;
    protocol::ParseError error;
    ASSERT_EQ(protocol::parse_request(c.line, request, error), protocol::ParseStatus::kRequest) << c.line;
    SessionRequest out;
    ASSERT_EQ(request_from_protocol(5, request, out), c.replicated) << c.line;
    if (!c.replicated) continue;
    EXPECT_EQ(out.verb, c.verb) << c.line;
    EXPECT_EQ(out.session, 5u);
    EXPECT_EQ(out.tag, "t1");
    // The host fills in origin and seq before proposing.
    EXPECT_EQ(out.origin, 0u);
    EXPECT_EQ(out.seq, 0u);
    EXPECT_FALSE(check_command(out).is_ok()) << c.line;
    out.origin = 2;
    out.seq = 1;
    EXPECT_TRUE(check_command(out).is_ok()) << c.line;
  }
  protocol::Request request;
  protocol::ParseError error;
  SessionRequest out;
  ASSERT_EQ(protocol::parse_request("t1 ACQUIRE db 2 500", request, error), protocol::ParseStatus::kRequest);
  ASSERT_TRUE(request_from_protocol(5, request, out));
  EXPECT_EQ(out.name, "db");
  EXPECT_EQ(out.count, 2);
  EXPECT_EQ(out.timeout_ms, 500);
  ASSERT_EQ(protocol::parse_request("t1 CREATE db 1 3 EXCL", request, error), protocol::ParseStatus::kRequest);
  ASSERT_TRUE(request_from_protocol(5, request, out));
  EXPECT_EQ(out.value, 1);
  EXPECT_EQ(out.max, 3);
  EXPECT_TRUE(out.exclusive);
  ASSERT_EQ(protocol::parse_request("t1 KICK 12", request, error), protocol::ParseStatus::kRequest);
  ASSERT_TRUE(request_from_protocol(5, request, out));
  EXPECT_EQ(out.target, 12u);
  ASSERT_EQ(protocol::parse_request("t1 KICK x", request, error), protocol::ParseStatus::kRequest);
  EXPECT_FALSE(request_from_protocol(5, request, out));
}

TEST(Results, RoundTripAndDamageRefused) {
  EntryResults results;
  results.index = 42;
  results.time_ms = 9000;
  CommandResult& a = results.commands.emplace_back();
  a.answer = make_answer(Answer::Type::kGranted, 17);
  CommandResult& b = results.commands.emplace_back();
  b.answer = make_answer(Answer::Type::kError, 0, protocol::ErrorCode::kLimit, true);
  b.completions.push_back({3, "w1", server::Completion::Type::kGranted, 18});
  b.completions.push_back({4, "w2", server::Completion::Type::kTimedOut, 0});
  b.ended.push_back({9, CloseCause::kIdle, 1});
  results.commands.emplace_back().answer = make_answer(Answer::Type::kDuplicate, 12);
  results.commands.emplace_back().answer = make_answer(Answer::Type::kNotHost, 3);
  results.commands.emplace_back().answer = make_answer(Answer::Type::kError, 0, protocol::ErrorCode::kDenied);
  const std::string bytes = encode_results(results);
  auto decoded = decode_results(bytes);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(*decoded, results);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x10);
    EXPECT_FALSE(decode_results(damaged)) << "byte " << i;
  }
}

// Version 1 (before hosts, seqs, resumes and members) is refused, whatever
// the body: a v1 replica's log or snapshot is not read as v2.
TEST(Formats, Version1BytesAreRefused) {
  const auto reframed = [](const std::string& bytes, std::string_view magic, std::uint8_t version) {
    auto body = wire::open_frame(bytes, magic, version, "any");
    EXPECT_TRUE(body);
    wire::Writer w = wire::begin_frame(magic, 1);
    w.bytes() += std::string(*body);
    return wire::end_frame(w);
  };
  EXPECT_EQ(kEntryVersion, 3);
  EXPECT_EQ(kResultsVersion, 2);
  const std::string entry = reframed(encode_entry(every_command()), kEntryMagic, kEntryVersion);
  auto decoded = decode_entry(entry);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  EXPECT_NE(decoded.status().message().find("unknown version 1"), std::string::npos) << decoded.status().message();
  // An entry of v1's shape: no origin, seq or secret.
  wire::Writer v1 = wire::begin_frame(kEntryMagic, 1);
  v1.i64(0);
  v1.u32(1);
  v1.u8(4);  // TouchSession
  v1.u32(8);
  v1.u64(1);
  EXPECT_FALSE(decode_entry(wire::end_frame(v1)));
  EntryResults results;
  results.commands.emplace_back().answer = make_answer(Answer::Type::kOk);
  auto decoded_results = decode_results(reframed(encode_results(results), kResultsMagic, kResultsVersion));
  ASSERT_FALSE(decoded_results);
  EXPECT_NE(decoded_results.status().message().find("unknown version 1"), std::string::npos);
}

// The bytes of a version 2 server: its OpenSession (type 1) and
// ResumeSession (type 8) carry the secret in clear (a u16 length, then the
// secret); the other commands are as version 3 has them (encode_command).
std::string v2_command(std::uint8_t type, wire::Writer fields) {
  wire::Writer w;
  w.u8(type);
  w.u32(static_cast<std::uint32_t>(fields.bytes().size()));
  w.bytes() += fields.bytes();
  return std::move(w.bytes());
}
std::string v2_open(std::string_view label, std::string_view peer, std::string_view dialect, ServerId origin,
                    std::uint64_t nonce, std::string_view secret) {
  wire::Writer f;
  f.str(label);
  f.str(peer);
  f.str(dialect);
  f.u64(origin);
  f.u64(nonce);
  f.str(secret);
  return v2_command(1, std::move(f));
}
std::string v2_resume(SessionId session, ServerId origin, std::string_view secret, ServerId from_host) {
  wire::Writer f;
  f.u64(session);
  f.u64(origin);
  f.str(secret);
  f.u64(from_host);
  return v2_command(8, std::move(f));
}
std::string v2_entry(std::int64_t time_ms, const std::vector<std::string>& commands, std::uint8_t version = 2) {
  wire::Writer w = wire::begin_frame(kEntryMagic, version);
  w.i64(time_ms);
  w.u32(static_cast<std::uint32_t>(commands.size()));
  for (const std::string& command : commands) w.bytes() += command;
  return wire::end_frame(w);
}

// Version 3 carries the secrets' SHA-256 digests, never a secret: a version
// 2 entry (a log written before the upgrade) is still read, its secrets
// hashed as it is decoded, and its sessions still resume with their secret;
// it is written again as version 3. A version 2 secret that breaks the
// rules (length, charset) is refused, as version 2 refused it; a version
// after 3 is refused.
TEST(Formats, Version2EntriesAreReadWithTheirSecretsHashed) {
  // The digest is SHA-256 (`printf %s <secret> | sha256sum`).
  const std::string digest = secret_digest("0123456789abcdef0123456789abcdef");
  std::string hex;
  for (const char c : digest) {
    hex.push_back("0123456789abcdef"[static_cast<unsigned char>(c) >> 4]);
    hex.push_back("0123456789abcdef"[static_cast<unsigned char>(c) & 0xf]);
  }
  EXPECT_EQ(hex, "3eb1bd439947eb762998e566ccc2e099c791118b2f40579cc4f7da2b5061b7f9");
  const std::string v2 = v2_entry(100, {v2_open("build", "10.0.0.1:5000", "v1", 2, 7, kSecret),
                                        encode_command(TouchAll{}), v2_resume(1, 3, kSecret, 2)});
  ASSERT_NE(v2.find(kSecret), std::string::npos);
  auto decoded = decode_entry(v2);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  const Entry expected{
      100, {make_open("build", "10.0.0.1:5000", "v1", 2, 7, kSecret), TouchAll{}, make_resume(1, 3, kSecret, 2)}};
  EXPECT_EQ(*decoded, expected);
  const std::string v3 = encode_entry(*decoded);
  EXPECT_EQ(static_cast<std::uint8_t>(v3[4]), 3);
  EXPECT_EQ(v3.find(kSecret), std::string::npos) << "the secret in clear in a version 3 entry";
  EXPECT_NE(v3.find(secret_digest(kSecret)), std::string::npos);
  auto again = decode_entry(v3);
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_EQ(*again, expected);

  // A session opened by a version 2 entry resumes with its secret (a
  // version 3 ResumeSession), and a version 2 ResumeSession still resumes
  // one opened by version 3; a wrong secret is denied either way.
  StateMachine sm;
  ASSERT_TRUE(sm.apply(1, v2_entry(100, {v2_open("", "p", "v1", 2, 1, kSecret)})));
  ASSERT_TRUE(sm.apply(2, encode_entry(Entry{100, {make_open("", "p", "v1", 2, 2, std::string(32, 'e'))}})));
  const auto answer_of = [&sm](std::uint64_t index, const std::string& entry) {
    auto applied = sm.apply(index, entry);
    if (!applied) {
      ADD_FAILURE() << applied.status().to_string();
      return Answer::Type::kNoSession;
    }
    auto results = decode_results(*applied);
    if (!results || results->commands.empty()) {
      ADD_FAILURE() << "no results";
      return Answer::Type::kNoSession;
    }
    return results->commands[0].answer.type;
  };
  EXPECT_EQ(answer_of(3, encode_entry(Entry{200, {make_resume(1, 3, std::string(32, 'e'), 2)}})), Answer::Type::kError);
  EXPECT_EQ(answer_of(4, v2_entry(200, {v2_resume(2, 3, kSecret, 2)})), Answer::Type::kError);
  EXPECT_EQ(answer_of(5, encode_entry(Entry{200, {make_resume(1, 3, kSecret, 2)}})), Answer::Type::kOk);
  EXPECT_EQ(answer_of(6, v2_entry(200, {v2_resume(2, 3, std::string(32, 'e'), 2)})), Answer::Type::kOk);
  EXPECT_EQ(sm.sessions().at(1).host, 3u);
  EXPECT_EQ(sm.sessions().at(2).host, 3u);

  // Version 2 secrets that break its rules, in either command.
  for (const std::string& bad : {std::string(kMinSecretBytes - 1, 'a'), std::string(kMaxSecretBytes + 1, 'a'),
                                 std::string(20, 'A'), std::string(20, 'g'), std::string()}) {
    for (const std::string& command : {v2_open("", "", "", 1, 0, bad), v2_resume(1, 1, bad, 1)}) {
      auto refused = decode_entry(v2_entry(0, {encode_command(TouchAll{}), command}));
      ASSERT_FALSE(refused) << bad;
      EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
      EXPECT_NE(refused.status().message().find("command 1"), std::string::npos) << refused.status().message();
    }
  }
  // Version 3 bytes read as version 2, and the other way round: refused.
  EXPECT_FALSE(decode_entry(v2_entry(0, {v2_open("", "", "", 1, 0, kSecret)}, 3)));
  const std::string v3_open = encode_entry(Entry{0, {make_open()}});
  auto body = wire::open_frame(v3_open, kEntryMagic, kEntryVersion, "entry");
  ASSERT_TRUE(body);
  wire::Writer as_v2 = wire::begin_frame(kEntryMagic, 2);
  as_v2.bytes() += std::string(*body);
  EXPECT_FALSE(decode_entry(wire::end_frame(as_v2)));
  // A version after this one.
  auto later = decode_entry(v2_entry(0, {encode_command(TouchAll{})}, kEntryVersion + 1));
  ASSERT_FALSE(later);
  EXPECT_NE(later.status().message().find("unknown version 4"), std::string::npos) << later.status().message();
}

}  // namespace
}  // namespace netsem::replication
