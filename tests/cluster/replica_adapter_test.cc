// ReplicaAdapter (src/cluster/replica_adapter.h) without RaftNode: what it
// applies, snapshots and restores is the replication::StateMachine's, and
// each apply and restore reaches the sink in order; an entry the state
// machine refuses leaves the state as it was and reaches the sink all the
// same, for the loop replica to refuse too (and the server to stop).
#include "cluster/replica_adapter.h"

#include <gtest/gtest.h>

#include <vector>

#include "replication/entry.h"
#include "replication/results.h"
#include "replication/state_machine.h"

namespace netsem::cluster {
namespace {

using replication::Entry;
using replication::OpenSession;

TEST(ReplicaAdapter, AppliesRestoresAndHandsEachToTheSinkInOrder) {
  std::vector<ReplicaEvent> events;
  ReplicaAdapter adapter({}, [&](ReplicaEvent e) { events.push_back(std::move(e)); });
  const std::string first = replication::encode_entry(Entry{
      100,
      {OpenSession{"", "10.0.0.1:1", "v1", 1, 1, replication::secret_digest("00112233445566778899aabbccddeeff")}}});
  const std::string second = replication::encode_entry(Entry{
      200,
      {OpenSession{"b", "10.0.0.1:2", "v1", 1, 2, replication::secret_digest("00112233445566778899aabbccddeeff")}}});
  auto r1 = adapter.apply(1, first);
  ASSERT_TRUE(r1) << r1.status().to_string();
  auto results = replication::decode_results(*r1);
  ASSERT_TRUE(results);
  EXPECT_EQ(results->commands.at(0).answer.number, 1u);  // the new session's id
  ASSERT_TRUE(adapter.apply(2, second));
  EXPECT_EQ(adapter.last_index(), 2u);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], (ReplicaEvent{ReplicaEvent::Kind::kApplied, 1, first}));
  EXPECT_EQ(events[1], (ReplicaEvent{ReplicaEvent::Kind::kApplied, 2, second}));

  // A loop replica fed the events ends in the same state.
  replication::StateMachine loop;
  for (const ReplicaEvent& e : events) ASSERT_TRUE(loop.apply(e.index, e.bytes));
  const std::string snapshot = adapter.snapshot();
  EXPECT_EQ(loop.snapshot(), snapshot);

  // Refused: a corrupt entry and an index going back; no change, but each
  // is handed on, and the loop replica refuses it as well.
  EXPECT_EQ(adapter.apply(3, "NSRE junk").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(adapter.apply(1, first).status().code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2], (ReplicaEvent{ReplicaEvent::Kind::kApplied, 3, "NSRE junk"}));
  EXPECT_EQ(events[3], (ReplicaEvent{ReplicaEvent::Kind::kApplied, 1, first}));
  for (std::size_t i = 2; i < events.size(); ++i) EXPECT_FALSE(loop.apply(events[i].index, events[i].bytes));
  EXPECT_EQ(loop.snapshot(), snapshot);
  EXPECT_EQ(adapter.snapshot(), snapshot);
  EXPECT_EQ(adapter.applied_count(), 2u);
  EXPECT_EQ(adapter.refused_count(), 2u);

  // Restore: a fresh adapter takes the snapshot and says so.
  std::vector<ReplicaEvent> others;
  ReplicaAdapter restored({}, [&](ReplicaEvent e) { others.push_back(std::move(e)); });
  EXPECT_EQ(restored.restore("NSRS junk").code(), StatusCode::kCorruption);
  EXPECT_TRUE(others.empty());
  ASSERT_TRUE(restored.restore(snapshot));
  ASSERT_EQ(others.size(), 1u);
  EXPECT_EQ(others[0], (ReplicaEvent{ReplicaEvent::Kind::kRestored, 2, snapshot}));
  EXPECT_EQ(restored.last_index(), 2u);
  EXPECT_EQ(restored.restored_count(), 1u);
  EXPECT_EQ(restored.snapshot(), snapshot);
}

// take_commit_wanted: whether another server (a follower, to the leader
// that applied the entry) answers a client of its own from what the entry
// did, so that RaftNode sends it the commit at once.
TEST(ReplicaAdapter, WantsTheCommitPushedWhenAnotherServersClientWaitsForTheEntry) {
  using replication::CloseSession;
  using replication::RequestVerb;
  using replication::SessionRequest;
  using replication::TouchSession;
  constexpr replication::ServerId kSelf = 1, kOther = 2;
  ReplicaAdapter adapter({}, nullptr, kSelf);
  std::uint64_t index = 0;
  const auto apply = [&](replication::Command command) {
    const auto result = adapter.apply(++index, replication::encode_entry(Entry{100, {std::move(command)}}));
    EXPECT_TRUE(result) << result.status().to_string();
    return adapter.take_commit_wanted();
  };
  const std::string secret = replication::secret_digest("00112233445566778899aabbccddeeff");
  // Session 1 on this server, session 2 on the other: the other's HELLO waits.
  EXPECT_FALSE(apply(OpenSession{"", "10.0.0.1:1", "v1", kSelf, 1, secret}));
  EXPECT_TRUE(apply(OpenSession{"", "10.0.0.2:1", "v1", kOther, 1, secret}));
  EXPECT_FALSE(adapter.take_commit_wanted()) << "reading it clears it";
  const auto request = [](replication::SessionId session, replication::ServerId origin, std::uint64_t seq,
                          RequestVerb verb, std::int64_t timeout_ms = -1) {
    SessionRequest r;
    r.session = session;
    r.origin = origin;
    r.seq = seq;
    r.verb = verb;
    r.tag = "t" + std::to_string(seq);
    r.name = "x";
    r.timeout_ms = timeout_ms;
    return r;
  };
  EXPECT_FALSE(apply(request(1, kSelf, 1, RequestVerb::kAcquire)));  // granted here, answered here
  EXPECT_TRUE(apply(request(2, kOther, 1, RequestVerb::kAcquire)));  // queued: the other answers QUEUED
  // This server's RELEASE hands x on to the other's session: its grant waits.
  EXPECT_TRUE(apply(request(1, kSelf, 2, RequestVerb::kRelease)));
  // Nobody waits for a touch or a close, nor for a release that grants nobody elsewhere.
  EXPECT_FALSE(apply(TouchSession{2, kOther}));
  EXPECT_FALSE(apply(CloseSession{2, kOther, replication::CloseCause::kClosed}));
  EXPECT_FALSE(apply(request(1, kSelf, 3, RequestVerb::kAcquire)));
  // A server that does not know its id (0) never wants it.
  ReplicaAdapter anonymous({}, nullptr);
  ASSERT_TRUE(anonymous.apply(
      1, replication::encode_entry(Entry{100, {OpenSession{"", "10.0.0.2:1", "v1", kOther, 1, secret}}})));
  EXPECT_FALSE(anonymous.take_commit_wanted());
}

}  // namespace
}  // namespace netsem::cluster
