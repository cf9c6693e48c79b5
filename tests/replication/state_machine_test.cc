// Tests of StateMachine, step by step: sessions opened by the log, requests
// answered as the table answers them, grants completed for other sessions,
// time advances that expire waiters and silent sessions at the entry's log
// time, TouchAll, an earlier time applied at the last one, KICK, HELLO,
// requests of ended sessions; a corrupted entry or snapshot refused with
// nothing changed; fences that go on rising through a snapshot; resent
// requests (kDuplicate) and commands from a server that does not host the
// session (kNotHost) that change nothing; resume with the right and wrong
// secret; members through a snapshot; version 1 snapshots refused.
#include "replication/state_machine.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replication/entry_generator.h"
#include "replication/wire.h"

namespace netsem::replication {
namespace {

using generated::kHost;
using generated::kSecret;
using generated::make_answer;
using generated::make_close;
using generated::make_open;
using generated::make_request;
using generated::make_resume;
using generated::make_touch;

using Type = Answer::Type;

// A version 2 snapshot's body from a version 3 one: each session's secret
// digest (of `secret`) turned back into the secret in clear (u16 length,
// then the secret), as version 2 held it.
std::string as_version2(std::string body, const std::string& secret) {
  const std::string digest = secret_digest(secret);
  wire::Writer clear;
  clear.str(secret);
  for (std::size_t at = body.find(digest); at != std::string::npos; at = body.find(digest, at + clear.bytes().size())) {
    body.replace(at, digest.size(), clear.bytes());
  }
  return body;
}

class Machine {
 public:
  // Applies one entry of `commands` at `time_ms`; returns its results. A
  // request without a seq gets its session's next one, as its host counts.
  EntryResults apply(std::int64_t time_ms, std::vector<Command> commands) {
    for (Command& command : commands) {
      if (auto* request = std::get_if<SessionRequest>(&command); request != nullptr && request->seq == 0) {
        request->seq = ++seqs[request->session];
      }
    }
    Entry entry{time_ms, std::move(commands)};
    auto bytes = sm.apply(++index, encode_entry(entry));
    EXPECT_TRUE(bytes) << bytes.status().to_string();
    auto results = decode_results(*bytes);
    EXPECT_TRUE(results);
    return *results;
  }
  SessionId open(std::int64_t time_ms = 0) {
    return apply(time_ms, {make_open("", "peer", "v1")}).commands[0].answer.number;
  }
  CommandResult take(std::int64_t time_ms, SessionId s, std::string tag, std::string name, std::int64_t timeout = -1,
                     std::int64_t count = 1) {
    return apply(time_ms, {make_request(s, RequestVerb::kAcquire, std::move(tag), std::move(name), count, timeout)})
        .commands[0];
  }
  CommandResult release(std::int64_t time_ms, SessionId s, std::string name) {
    return apply(time_ms, {make_request(s, RequestVerb::kRelease, "r", std::move(name))}).commands[0];
  }
  StateMachine sm;
  std::uint64_t index = 0;
  std::map<SessionId, std::uint64_t> seqs;  // the last seq given to each session's requests
};

TEST(StateMachine, SessionsOpenWithLogIdsAndQueuedRequestsCompleteForTheirSessions) {
  Machine m;
  m.apply(0, {Reconfigure{{{"pool", 1}}, 0}});
  const SessionId a = m.open();
  const SessionId b = m.open();
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 2u);
  const CommandResult granted = m.take(10, a, "t1", "pool");
  EXPECT_EQ(granted.answer.type, Type::kGranted);
  const std::uint64_t fence = granted.answer.number;
  const CommandResult queued = m.take(20, b, "t1", "pool");
  EXPECT_EQ(queued.answer, make_answer(Type::kQueued, 1));
  const CommandResult released = m.release(30, a, "pool");
  EXPECT_EQ(released.answer, make_answer(Type::kValue, 0));
  ASSERT_EQ(released.completions.size(), 1u);
  EXPECT_EQ(released.completions[0].session, b);
  EXPECT_EQ(released.completions[0].tag, "t1");
  EXPECT_EQ(released.completions[0].type, server::Completion::Type::kGranted);
  EXPECT_GT(released.completions[0].fence, fence);
  // A second release is the table's NOT_HELD; a duplicate tag is refused.
  EXPECT_EQ(m.release(40, a, "pool").answer, make_answer(Type::kError, 0, protocol::ErrorCode::kNotHeld));
  EXPECT_EQ(m.take(50, a, "t2", "pool").answer.type, Type::kQueued);
  SessionRequest post = make_request(a, RequestVerb::kPost, "t2", "pool");
  EXPECT_EQ(m.apply(60, {post}).commands[0].answer, make_answer(Type::kError, 0, protocol::ErrorCode::kDuplicateTag));
  EXPECT_EQ(m.sm.sessions().size(), 2u);
  EXPECT_EQ(m.sm.sessions().at(a).peer, "peer");
}

TEST(StateMachine, TimeAdvanceExpiresQueuedRequestsAtTheEntrysLogTime) {
  Machine m;
  const SessionId a = m.open();
  const SessionId b = m.open();
  EXPECT_EQ(m.take(0, a, "h", "x").answer.type, Type::kGranted);
  EXPECT_EQ(m.take(100, b, "w", "x", 250).answer.type, Type::kQueued);
  EXPECT_EQ(m.sm.next_expiry_ms(), 350);
  // Requests are applied at their entry's time; only AdvanceTime expires.
  EXPECT_TRUE(m.apply(349, {AdvanceTime{}}).commands[0].completions.empty());
  EXPECT_TRUE(m.apply(400, {make_touch(a)}).commands[0].completions.empty());
  const EntryResults advanced = m.apply(400, {AdvanceTime{}});
  ASSERT_EQ(advanced.commands[0].completions.size(), 1u);
  EXPECT_EQ(advanced.commands[0].completions[0].session, b);
  EXPECT_EQ(advanced.commands[0].completions[0].type, server::Completion::Type::kTimedOut);
  EXPECT_EQ(m.sm.next_expiry_ms(), std::nullopt);
}

TEST(StateMachine, SilentSessionsExpireAndTheirPermitsGoToTheNextInQueue) {
  Machine m;
  m.apply(0, {Reconfigure{{}, 1000}});
  const SessionId a = m.open(0);
  const SessionId b = m.open(0);
  EXPECT_EQ(m.take(0, a, "h", "x").answer.type, Type::kGranted);
  EXPECT_EQ(m.take(600, b, "w", "x").answer.type, Type::kQueued);
  EXPECT_EQ(m.sm.next_expiry_ms(), 1000);
  EXPECT_TRUE(m.apply(999, {AdvanceTime{}}).commands[0].ended.empty());
  const CommandResult expired = m.apply(1000, {AdvanceTime{}}).commands[0];
  ASSERT_EQ(expired.ended.size(), 1u);
  EXPECT_EQ(expired.ended[0], (Ended{a, CloseCause::kIdle, 0}));
  ASSERT_EQ(expired.completions.size(), 1u);
  EXPECT_EQ(expired.completions[0].session, b);
  EXPECT_EQ(expired.completions[0].type, server::Completion::Type::kGranted);
  EXPECT_FALSE(m.sm.sessions().contains(a));
  // A request of the ended session: the log says it is gone.
  EXPECT_EQ(m.release(1001, a, "x").answer.type, Type::kNoSession);
  EXPECT_EQ(m.sm.next_expiry_ms(), 1600);
}

TEST(StateMachine, TouchAllGivesEverySessionAFullTimeout) {
  Machine m;
  m.apply(0, {Reconfigure{{}, 1000}});
  const SessionId a = m.open(0);
  const SessionId b = m.open(500);
  // A new leader, elected at 900, proposes TouchAll first.
  m.apply(900, {TouchAll{}});
  EXPECT_EQ(m.sm.next_expiry_ms(), 1900);
  EXPECT_TRUE(m.apply(1899, {AdvanceTime{}}).commands[0].ended.empty());
  const CommandResult expired = m.apply(1900, {AdvanceTime{}}).commands[0];
  ASSERT_EQ(expired.ended.size(), 2u);
  EXPECT_EQ(expired.ended[0].session, a);  // ties by id
  EXPECT_EQ(expired.ended[1].session, b);
  EXPECT_TRUE(m.sm.sessions().empty());
}

TEST(StateMachine, AnEarlierTimeIsAppliedAtTheLastTime) {
  Machine m;
  const SessionId a = m.open(5000);
  const EntryResults earlier = m.apply(1000, {make_touch(a)});
  EXPECT_EQ(earlier.time_ms, 5000);
  EXPECT_EQ(m.sm.log_time_ms(), 5000);
  EXPECT_EQ(m.take(2000, a, "t", "x", 100).answer.type, Type::kGranted);
  const SessionId b = m.open(0);
  EXPECT_EQ(m.take(0, b, "t", "x", 100).answer.type, Type::kQueued);
  EXPECT_EQ(m.sm.next_expiry_ms(), 5100);  // queued at 5000, not at 0
}

TEST(StateMachine, KickEndsTheTargetAndHelloSetsTheLabel) {
  Machine m;
  const SessionId a = m.open();
  const SessionId b = m.open();
  EXPECT_EQ(m.take(0, a, "h", "x").answer.type, Type::kGranted);
  EXPECT_EQ(m.take(0, b, "w", "x").answer.type, Type::kQueued);
  SessionRequest hello = make_request(b, RequestVerb::kHello, "h1", "ci-runner");
  EXPECT_EQ(m.apply(1, {hello}).commands[0].answer.type, Type::kOk);
  EXPECT_EQ(m.sm.sessions().at(b).label, "ci-runner");
  SessionRequest kick = make_request(b, RequestVerb::kKick, "k");
  kick.target = a;
  const CommandResult kicked = m.apply(2, {kick}).commands[0];
  EXPECT_EQ(kicked.answer.type, Type::kOk);
  ASSERT_EQ(kicked.ended.size(), 1u);
  EXPECT_EQ(kicked.ended[0].cause, CloseCause::kKicked);
  ASSERT_EQ(kicked.completions.size(), 1u);
  EXPECT_EQ(kicked.completions[0].session, b);
  kick.target = 99;
  EXPECT_EQ(m.apply(3, {kick}).commands[0].answer, make_answer(Type::kError, 0, protocol::ErrorCode::kNotFound));
  EXPECT_EQ(m.apply(4, {make_close(a, CloseCause::kClosed)}).commands[0].answer.type, Type::kNoSession);
}

TEST(StateMachine, ACorruptedEntryIsRefusedAndChangesNothing) {
  Machine m;
  const SessionId a = m.open();
  EXPECT_EQ(m.take(0, a, "h", "x").answer.type, Type::kGranted);
  const std::string before = m.sm.snapshot();
  SessionRequest release = make_request(a, RequestVerb::kRelease, "r", "x");
  release.seq = 100;
  Entry entry{100, {make_open(), release, AdvanceTime{}}};
  const std::string bytes = encode_entry(entry);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x04);
    auto applied = m.sm.apply(m.index + 1, damaged);
    ASSERT_FALSE(applied) << "byte " << i;
    EXPECT_EQ(applied.status().code(), StatusCode::kCorruption);
  }
  // A command that breaks the rules, after one that is fine: nothing of
  // the entry is applied.
  SessionRequest bad = make_request(a, RequestVerb::kAcquire, "t", "y", 0);
  bad.seq = 101;
  auto refused = m.sm.apply(m.index + 1, encode_entry(Entry{100, {make_open(), bad}}));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.status().message().find("count"), std::string::npos) << refused.status().message();
  // An index below the last one applied.
  auto again = m.sm.apply(m.index - 1, bytes);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.sm.snapshot(), before);
  // Several entries under one log index (the consensus layer's batches).
  EXPECT_TRUE(m.sm.apply(m.index, bytes));
  EXPECT_TRUE(m.sm.apply(m.index, bytes));
  EXPECT_EQ(m.sm.last_index(), m.index);
}

TEST(StateMachine, ACorruptedSnapshotIsRefusedAndChangesNothing) {
  Machine source;
  source.apply(0, {Reconfigure{{{"pool", 2}}, 5000}});
  const SessionId a = source.open(10);
  const SessionId b = source.open(20);
  EXPECT_EQ(source.take(30, a, "h", "pool", -1, 2).answer.type, Type::kGranted);
  EXPECT_EQ(source.take(40, b, "w", "pool", 900).answer.type, Type::kQueued);
  const std::string good = source.sm.snapshot();

  Machine m;
  const SessionId other = m.open(7);
  EXPECT_EQ(m.take(7, other, "h", "z").answer.type, Type::kGranted);
  const std::string before = m.sm.snapshot();
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string damaged = good;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x20);
    const Status status = m.sm.restore(damaged);
    ASSERT_FALSE(status.is_ok()) << "byte " << i;
    EXPECT_EQ(status.code(), StatusCode::kCorruption);
  }
  for (std::size_t n = 0; n < good.size(); n += 7) EXPECT_FALSE(m.sm.restore(good.substr(0, n)).is_ok());
  // Good checksums over a bad state: the log time (the body's second field)
  // moved before the sessions' activity, or out of range.
  auto body = wire::open_frame(good, kSnapshotMagic, kSnapshotVersion, "snapshot");
  ASSERT_TRUE(body);
  for (const std::int64_t time : {std::int64_t{0}, std::int64_t{-1}}) {
    wire::Writer w = wire::begin_frame(kSnapshotMagic, kSnapshotVersion);
    wire::Writer field;
    field.i64(time);
    w.bytes() += std::string(*body).replace(8, 8, field.bytes());
    const Status status = m.sm.restore(wire::end_frame(w));
    EXPECT_EQ(status.code(), StatusCode::kCorruption);
    EXPECT_NE(status.message().find(time < 0 ? "log time" : "times out of range"), std::string::npos)
        << status.message();
  }
  EXPECT_EQ(m.sm.snapshot(), before);
  ASSERT_TRUE(m.sm.restore(good).is_ok());
  EXPECT_EQ(m.sm.snapshot(), good);
}

TEST(StateMachine, FencesKeepRisingThroughASnapshot) {
  Machine a;
  const SessionId s = a.open();
  std::uint64_t fence = 0;
  for (int i = 0; i < 5; ++i) {
    fence = a.take(i, s, "t", "x").answer.number;
    a.release(i, s, "x");
  }
  Machine b;
  ASSERT_TRUE(b.sm.restore(a.sm.snapshot()).is_ok());
  b.index = a.index;
  b.seqs = a.seqs;  // the host counts on
  EXPECT_EQ(b.take(10, s, "t", "x").answer.type, Type::kGranted);
  EXPECT_EQ(b.sm.table().stats().last_fence, fence + 1);
  // Sessions opened after the restore get new ids.
  EXPECT_EQ(b.open(), s + 1);
}

// What a duplicate or a refused command must leave alone: the semaphores
// (values, holders with their fences, queues), the last fence, and every
// session (its activity, host and last seq among them).
struct Observed {
  std::vector<server::TableImage::Semaphore> semaphores;
  std::uint64_t last_fence = 0;
  std::map<SessionId, SessionRecord> sessions;
  std::optional<std::int64_t> next_expiry;
  friend bool operator==(const Observed&, const Observed&) = default;
};
Observed observe(const StateMachine& sm) {
  const server::TableImage image = sm.table().export_image();
  return {image.semaphores, image.last_fence, sm.sessions(), sm.next_expiry_ms()};
}

TEST(StateMachine, AResentRequestIsADuplicateAndChangesNothing) {
  Machine m;
  m.apply(0, {Reconfigure{{{"pool", 1}}, 1000}});
  const SessionId a = m.open(0);
  const SessionId b = m.open(0);
  SessionRequest take = make_request(a, RequestVerb::kAcquire, "t1", "pool");
  take.seq = 1;
  const CommandResult granted = m.apply(10, {take}).commands[0];
  ASSERT_EQ(granted.answer.type, Type::kGranted);
  EXPECT_EQ(m.take(20, b, "t1", "pool").answer.type, Type::kQueued);
  EXPECT_EQ(m.sm.sessions().at(a).last_seq, 1u);

  // The host proposes the ACQUIRE again (a leader change lost its outcome):
  // no second grant, no new fence, no activity.
  Observed before = observe(m.sm);
  const CommandResult again = m.apply(500, {take}).commands[0];
  EXPECT_EQ(again.answer, make_answer(Type::kDuplicate, 1));
  EXPECT_TRUE(again.completions.empty());
  EXPECT_EQ(observe(m.sm), before);
  EXPECT_EQ(m.sm.sessions().at(a).last_activity_ms, 10);

  // A RELEASE that grants b, then the same RELEASE and an older seq again.
  SessionRequest release = make_request(a, RequestVerb::kRelease, "r", "pool");
  release.seq = 5;
  const CommandResult released = m.apply(600, {release}).commands[0];
  EXPECT_EQ(released.answer, make_answer(Type::kValue, 0));
  ASSERT_EQ(released.completions.size(), 1u);
  EXPECT_EQ(released.completions[0].session, b);
  before = observe(m.sm);
  for (const std::uint64_t seq : {5, 4, 1}) {
    release.seq = seq;
    const CommandResult resent = m.apply(700, {release}).commands[0];
    EXPECT_EQ(resent.answer, make_answer(Type::kDuplicate, 5)) << "seq " << seq;
    EXPECT_TRUE(resent.completions.empty()) << "seq " << seq;
    EXPECT_EQ(observe(m.sm), before) << "seq " << seq;
  }
  // A duplicate is no activity: a expires at 600 + 1000.
  EXPECT_EQ(m.sm.next_expiry_ms(), 1020);                                  // b, active at 20
  EXPECT_EQ(m.apply(1599, {AdvanceTime{}}).commands[0].ended.size(), 1u);  // b
  EXPECT_EQ(m.apply(1600, {AdvanceTime{}}).commands[0].ended, (std::vector<Ended>{{a, CloseCause::kIdle, 0}}));
}

TEST(StateMachine, CommandsFromAServerThatDoesNotHostTheSessionChangeNothing) {
  Machine m;
  m.apply(0, {Reconfigure{{}, 1000}});
  const SessionId a = m.apply(0, {make_open("", "peer", "v1", 1)}).commands[0].answer.number;
  EXPECT_EQ(m.take(10, a, "h", "x").answer.type, Type::kGranted);
  EXPECT_EQ(m.sm.sessions().at(a).host, 1u);
  const Observed before = observe(m.sm);

  SessionRequest release = make_request(a, RequestVerb::kRelease, "r", "x");
  release.origin = 2;
  release.seq = 2;
  const std::vector<Command> refused = {release, make_close(a, CloseCause::kClosed, 2), make_touch(a, 2)};
  const EntryResults results = m.apply(900, refused);
  for (const CommandResult& c : results.commands) {
    EXPECT_EQ(c.answer, make_answer(Type::kNotHost, 1));
    EXPECT_TRUE(c.completions.empty());
    EXPECT_TRUE(c.ended.empty());
  }
  EXPECT_EQ(observe(m.sm), before);
  // Its host's seq 2 is not taken by the refused one.
  release.origin = 1;
  EXPECT_EQ(m.apply(950, {release}).commands[0].answer, make_answer(Type::kValue, 1));
  // The other server's touch kept nothing alive: silent since 950.
  EXPECT_EQ(m.apply(1950, {AdvanceTime{}}).commands[0].ended, (std::vector<Ended>{{a, CloseCause::kIdle, 0}}));
}

TEST(StateMachine, ResumeMovesTheHostAndAWrongSecretChangesNothing) {
  Machine m;
  m.apply(0, {Reconfigure{{}, 1000}});
  const SessionId a = m.apply(0, {make_open("", "peer", "v1", 1, 77, kSecret)}).commands[0].answer.number;
  EXPECT_EQ(m.take(10, a, "h", "x").answer.type, Type::kGranted);
  EXPECT_EQ(m.take(20, a, "h2", "y").answer.type, Type::kGranted);
  // The record holds the secret's digest, not the secret.
  EXPECT_EQ(m.sm.sessions().at(a).secret_digest, secret_digest(kSecret));

  // Wrong secrets: one character off, a prefix, another length.
  std::string off = kSecret;
  off.back() = off.back() == 'f' ? 'e' : 'f';
  const Observed before = observe(m.sm);
  for (const std::string& wrong : {off, kSecret.substr(0, 16), kSecret + "00"}) {
    const CommandResult denied = m.apply(500, {make_resume(a, 2, wrong)}).commands[0];
    EXPECT_EQ(denied.answer, make_answer(Type::kError, 0, protocol::ErrorCode::kDenied)) << wrong;
    EXPECT_EQ(observe(m.sm), before) << wrong;
  }
  EXPECT_EQ(m.apply(500, {make_resume(a + 1, 2)}).commands[0].answer.type, Type::kNoSession);

  // The right secret: server 2 hosts it from now on and counts on from
  // the last seq; the session is touched.
  const CommandResult resumed = m.apply(600, {make_resume(a, 2)}).commands[0];
  EXPECT_EQ(resumed.answer, make_answer(Type::kOk, 2));
  EXPECT_EQ(m.sm.sessions().at(a).host, 2u);
  EXPECT_EQ(m.sm.sessions().at(a).last_activity_ms, 600);
  EXPECT_EQ(m.sm.next_expiry_ms(), 1600);
  // A resume proposed again by a server that saw the old host (server 3
  // took the client's first RESUME, which the client gave up on): refused,
  // the newer connection's server keeps it.
  const Observed moved = observe(m.sm);
  EXPECT_EQ(m.apply(650, {make_resume(a, 3, kSecret, 1)}).commands[0].answer, make_answer(Type::kNotHost, 2));
  EXPECT_EQ(observe(m.sm), moved);
  // The old host's late commands: refused, the holds stay.
  SessionRequest release = make_request(a, RequestVerb::kRelease, "r", "x");
  release.origin = 1;
  release.seq = 3;
  EXPECT_EQ(m.apply(700, {release}).commands[0].answer, make_answer(Type::kNotHost, 2));
  EXPECT_EQ(m.apply(700, {make_close(a, CloseCause::kClosed, 1)}).commands[0].answer, make_answer(Type::kNotHost, 2));
  EXPECT_TRUE(m.sm.sessions().contains(a));
  EXPECT_EQ(m.sm.table().export_image().last_fence, 2u);

  // Host, last seq and secret survive a snapshot.
  Machine restored;
  ASSERT_TRUE(restored.sm.restore(m.sm.snapshot()).is_ok());
  restored.index = m.index;
  EXPECT_EQ(restored.sm.sessions(), m.sm.sessions());
  release.origin = 2;
  EXPECT_EQ(restored.apply(800, {release}).commands[0].answer, make_answer(Type::kValue, 1));
  EXPECT_EQ(restored.apply(800, {release}).commands[0].answer, make_answer(Type::kDuplicate, 3));
  const CommandResult closed = restored.apply(900, {make_close(a, CloseCause::kQuit, 2)}).commands[0];
  EXPECT_EQ(closed.ended, (std::vector<Ended>{{a, CloseCause::kQuit, 0}}));
}

// A probe (from_host kResumeProbe, what a server whose replica does not know
// the session submits before answering a RESUME) moves nothing, whatever
// the session's state: it says the session lives (kNotHost with its host),
// ended (kNoSession) or has another secret (kDenied), with the secret
// checked before the host.
TEST(StateMachine, AResumeProbeTellsWhetherTheSessionLivesAndChangesNothing) {
  Machine m;
  m.apply(0, {Reconfigure{{}, 1000}});
  const SessionId a = m.apply(0, {make_open("", "peer", "v1", 1, 77, kSecret)}).commands[0].answer.number;
  EXPECT_EQ(m.take(10, a, "h", "x").answer.type, Type::kGranted);
  std::string wrong = kSecret;
  wrong.back() = wrong.back() == 'f' ? 'e' : 'f';
  const Observed before = observe(m.sm);
  EXPECT_EQ(m.apply(500, {make_resume(a, 2, kSecret, kResumeProbe)}).commands[0].answer,
            make_answer(Type::kNotHost, 1));
  EXPECT_EQ(m.apply(500, {make_resume(a, 2, wrong, kResumeProbe)}).commands[0].answer,
            make_answer(Type::kError, 0, protocol::ErrorCode::kDenied));
  EXPECT_EQ(m.apply(500, {make_resume(a + 1, 2, kSecret, kResumeProbe)}).commands[0].answer.type, Type::kNoSession);
  // Not even the session's activity: it still expires 1000 ms after 10.
  EXPECT_EQ(observe(m.sm), before);
  EXPECT_EQ(m.sm.next_expiry_ms(), 1010);
  // The host it named is the one a real resume then moves it from.
  EXPECT_EQ(m.apply(600, {make_resume(a, 2, kSecret, 1)}).commands[0].answer, make_answer(Type::kOk, 1));
  EXPECT_EQ(m.apply(700, {make_resume(a, 3, kSecret, kResumeProbe)}).commands[0].answer,
            make_answer(Type::kNotHost, 2));
  EXPECT_EQ(m.sm.sessions().at(a).host, 2u);
  // Ended: the probe finds nothing.
  EXPECT_EQ(m.apply(800, {make_close(a, CloseCause::kQuit, 2)}).commands[0].ended.size(), 1u);
  EXPECT_EQ(m.apply(800, {make_resume(a, 3, kSecret, kResumeProbe)}).commands[0].answer.type, Type::kNoSession);
}

TEST(StateMachine, MembersAreReplicatedAndRoundTripThroughASnapshot) {
  Machine m;
  const EntryResults set =
      m.apply(0, {SetMember{1, "127.0.0.1:53555"}, SetMember{3, "127.0.0.3:53555"}, SetMember{2, "127.0.0.2:53555"},
                  SetMember{2, "[::1]:7000"}, RemoveMember{3}, RemoveMember{9}});
  for (const CommandResult& c : set.commands) EXPECT_EQ(c.answer, make_answer(Type::kOk));
  const std::map<ServerId, std::string> expected = {{1, "127.0.0.1:53555"}, {2, "[::1]:7000"}};
  EXPECT_EQ(m.sm.members(), expected);
  const std::string bytes = m.sm.snapshot();
  Machine restored;
  restored.apply(0, {SetMember{5, "other:1"}});
  ASSERT_TRUE(restored.sm.restore(bytes).is_ok());
  EXPECT_EQ(restored.sm.members(), expected);
  EXPECT_EQ(restored.sm.snapshot(), bytes);
  // A snapshot without members empties them.
  ASSERT_TRUE(restored.sm.restore(Machine().sm.snapshot()).is_ok());
  EXPECT_TRUE(restored.sm.members().empty());
}

// RaiseFences (netsem cluster raise-fences): the last fence jumps by `by`,
// the next grant is above it, a queued request granted later too, a
// replica restored from a snapshot taken after it hands out the same
// fences, and a raise past kMaxRaisedFence is LIMIT, changing nothing.
TEST(StateMachine, RaiseFencesRaisesTheNextFencesOnEveryReplica) {
  Machine m;
  m.apply(0, {Reconfigure{{{"pool", 1}}, 0}});
  const SessionId a = m.open();
  const SessionId b = m.open();
  const CommandResult granted = m.take(10, a, "t1", "pool");
  ASSERT_EQ(granted.answer.type, Type::kGranted);
  const std::uint64_t fence = granted.answer.number;
  EXPECT_EQ(m.take(20, b, "t1", "pool").answer.type, Type::kQueued);
  EXPECT_EQ(m.apply(30, {RaiseFences{1000, 1, 7}}).commands[0].answer, make_answer(Type::kValue, fence + 1000));
  EXPECT_EQ(m.sm.table().stats().last_fence, fence + 1000);
  const std::string snapshot = m.sm.snapshot();
  const CommandResult released = m.release(40, a, "pool");
  ASSERT_EQ(released.completions.size(), 1u);
  EXPECT_EQ(released.completions[0].fence, fence + 1001);
  EXPECT_EQ(m.take(50, a, "t2", "x").answer, make_answer(Type::kGranted, fence + 1002));

  // A replica restored from the snapshot hands out the same fences.
  Machine restored;
  ASSERT_TRUE(restored.sm.restore(snapshot).is_ok());
  restored.index = m.index - 2;
  restored.seqs = m.seqs;
  --restored.seqs[a];
  --restored.seqs[a];
  EXPECT_EQ(restored.release(40, a, "pool").completions.at(0).fence, fence + 1001);
  EXPECT_EQ(restored.take(50, a, "t2", "x").answer, make_answer(Type::kGranted, fence + 1002));
  EXPECT_EQ(restored.sm.snapshot(), m.sm.snapshot());

  // Past 2^62: LIMIT, and the fences go on from where they were.
  EXPECT_EQ(m.apply(60, {RaiseFences{kMaxFenceRaise, 1, 8}}).commands[0].answer.type, Type::kValue);
  Machine high;
  const SessionId c = high.open();
  for (int i = 0; i < 511; ++i) high.apply(0, {RaiseFences{kMaxFenceRaise, 1, 1}});
  EXPECT_EQ(high.sm.table().stats().last_fence, 511 * kMaxFenceRaise);
  EXPECT_EQ(high.apply(0, {RaiseFences{kMaxFenceRaise, 1, 1}}).commands[0].answer,
            make_answer(Type::kValue, kMaxRaisedFence));
  EXPECT_EQ(high.apply(0, {RaiseFences{1, 1, 1}}).commands[0].answer,
            make_answer(Type::kError, 0, protocol::ErrorCode::kLimit));
  EXPECT_EQ(high.take(0, c, "t", "x").answer, make_answer(Type::kGranted, kMaxRaisedFence + 1));
}

// Snapshots of version 1 (and of a version after this one), and version 2
// or 3 ones that break the invariants under a good checksum, are refused
// and change nothing. A good version 2 snapshot (the secrets in clear) is
// restored with the secrets hashed: its sessions still resume with their
// secret, and the next snapshot holds only the digest.
TEST(StateMachine, SnapshotsOfVersion1OrWithoutAHostOrASecretAreRefused) {
  Machine source;
  source.apply(0, {SetMember{4, "127.0.0.4:53555"}});
  const SessionId opened = source.open(0);
  const std::string good = source.sm.snapshot();
  auto body = wire::open_frame(good, kSnapshotMagic, kSnapshotVersion, "snapshot");
  ASSERT_TRUE(body);
  const auto framed = [](std::string_view bytes, std::uint8_t version) {
    wire::Writer w = wire::begin_frame(kSnapshotMagic, version);
    w.bytes() += std::string(bytes);
    return wire::end_frame(w);
  };
  ASSERT_TRUE(Machine().sm.restore(framed(*body, kSnapshotVersion)).is_ok());
  EXPECT_EQ(good.find(kSecret), std::string::npos) << "the secret in clear in a snapshot";
  const std::string digest = secret_digest(kSecret);
  const std::size_t digest_at = std::string(*body).find(digest);
  ASSERT_NE(digest_at, std::string::npos);

  // Version 2: the same state, the secret in clear.
  const std::string body2 = as_version2(std::string(*body), kSecret);
  ASSERT_NE(body2, std::string(*body));
  {
    Machine old;
    ASSERT_TRUE(old.sm.restore(framed(body2, 2)).is_ok());
    old.index = source.index;
    EXPECT_EQ(old.sm.sessions(), source.sm.sessions());
    EXPECT_EQ(old.sm.snapshot(), good) << "a version 2 snapshot is written again as version 3";
    const Observed before_wrong = observe(old.sm);
    EXPECT_EQ(old.apply(10, {make_resume(opened, 2, std::string(kSecret.size(), '7'))}).commands[0].answer,
              make_answer(Type::kError, 0, protocol::ErrorCode::kDenied));
    EXPECT_EQ(observe(old.sm), before_wrong);
    EXPECT_EQ(old.apply(10, {make_resume(opened, 2)}).commands[0].answer, make_answer(Type::kOk, 0));
    EXPECT_EQ(old.sm.sessions().at(opened).host, 2u);
  }

  Machine m;
  m.apply(0, {SetMember{1, "h:1"}});
  const std::string before = m.sm.snapshot();
  EXPECT_NE(m.sm.restore(framed(*body, 1)).message().find("unknown version 1"), std::string::npos);
  EXPECT_NE(m.sm.restore(framed(*body, kSnapshotVersion + 1)).message().find("unknown version 4"), std::string::npos);
  // A version 3 body read as version 2, and the other way round.
  EXPECT_FALSE(m.sm.restore(framed(*body, 2)).is_ok());
  EXPECT_FALSE(m.sm.restore(framed(body2, kSnapshotVersion)).is_ok());

  // The session's host is the u64 16 bytes before its digest (version 3),
  // or before its secret's length (version 2).
  std::string no_host(*body);
  no_host.replace(digest_at - 16, 8, std::string(8, '\0'));
  EXPECT_NE(m.sm.restore(framed(no_host, kSnapshotVersion)).message().find("host 0"), std::string::npos);
  const std::size_t secret_at = body2.find(kSecret);
  ASSERT_NE(secret_at, std::string::npos);
  std::string no_host2(body2);
  no_host2.replace(secret_at - 2 - 16, 8, std::string(8, '\0'));
  EXPECT_NE(m.sm.restore(framed(no_host2, 2)).message().find("host 0"), std::string::npos);
  std::string bad_secret(body2);
  bad_secret[secret_at] = 'G';
  EXPECT_NE(m.sm.restore(framed(bad_secret, 2)).message().find("invalid secret"), std::string::npos);
  const std::size_t address_at = std::string(*body).find("127.0.0.4:53555");
  ASSERT_NE(address_at, std::string::npos);
  std::string no_id(*body);
  no_id.replace(address_at - 2 - 8, 8, std::string(8, '\0'));
  EXPECT_NE(m.sm.restore(framed(no_id, kSnapshotVersion)).message().find("member 0"), std::string::npos);
  std::string bad_address(*body);
  bad_address[address_at + 9] = ' ';
  EXPECT_NE(m.sm.restore(framed(bad_address, kSnapshotVersion)).message().find("invalid client address"),
            std::string::npos);
  EXPECT_EQ(m.sm.snapshot(), before);
}

}  // namespace
}  // namespace netsem::replication
