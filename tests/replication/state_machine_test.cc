// Tests of StateMachine, step by step: sessions opened by the log, requests
// answered as the table answers them, grants completed for other sessions,
// time advances that expire waiters and silent sessions at the entry's log
// time, TouchAll, an earlier time applied at the last one, KICK, HELLO,
// requests of ended sessions; a corrupted entry or snapshot refused with
// nothing changed; fences that go on rising through a snapshot.
#include "replication/state_machine.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "replication/entry_generator.h"
#include "replication/wire.h"

namespace netsem::replication {
namespace {

using generated::make_answer;
using generated::make_open;
using generated::make_request;

using Type = Answer::Type;

class Machine {
 public:
  // Applies one entry of `commands` at `time_ms`; returns its results.
  EntryResults apply(std::int64_t time_ms, std::vector<Command> commands) {
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
  EXPECT_TRUE(m.apply(400, {TouchSession{a}}).commands[0].completions.empty());
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
  const EntryResults earlier = m.apply(1000, {TouchSession{a}});
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
  EXPECT_EQ(m.apply(4, {CloseSession{a, CloseCause::kClosed}}).commands[0].answer.type, Type::kNoSession);
}

TEST(StateMachine, ACorruptedEntryIsRefusedAndChangesNothing) {
  Machine m;
  const SessionId a = m.open();
  EXPECT_EQ(m.take(0, a, "h", "x").answer.type, Type::kGranted);
  const std::string before = m.sm.snapshot();
  Entry entry{100, {OpenSession{}, make_request(a, RequestVerb::kRelease, "r", "x"), AdvanceTime{}}};
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
  auto refused = m.sm.apply(m.index + 1, encode_entry(Entry{100, {OpenSession{}, bad}}));
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
  EXPECT_EQ(b.take(10, s, "t", "x").answer.type, Type::kGranted);
  EXPECT_EQ(b.sm.table().stats().last_fence, fence + 1);
  // Sessions opened after the restore get new ids.
  EXPECT_EQ(b.open(), s + 1);
}

}  // namespace
}  // namespace netsem::replication
